//! The store contract suite, run against the memory backend.
use std::sync::Arc;

use leadrouter::store::{Store, memory::MemoryStore};

leadrouter::store_contract_tests!(async { Arc::new(MemoryStore::default()) as Arc<dyn Store> });
