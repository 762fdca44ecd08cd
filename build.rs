//! Compiles proto/ with protox (no system protoc) and writes a descriptor set for reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/leadrouter/v1/common.proto",
        "proto/leadrouter/v1/leads.proto",
        "proto/leadrouter/v1/routing.proto",
        "proto/leadrouter/v1/reps.proto",
        "proto/leadrouter/v1/models.proto",
        "proto/leadrouter/v1/reports.proto",
    ];
    // tonic-prost-build 0.14 prints no rerun-if-changed lines, so say them ourselves.
    println!("cargo:rerun-if-changed=build.rs");
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("leadrouter_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Decoding a lead's attributes into a BTreeMap compares a few short keys per entry;
        // a HashMap would SipHash every name and rehash as it grows, and convert::lead moves
        // the entries into the domain map anyway.
        .btree_map(".leadrouter.v1.Lead.attributes")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
