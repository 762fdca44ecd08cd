//! A lead's context packed into one allocation: how stores keep it (issue 16: a queued lead
//! costs ~300 B of attributes this way instead of ~2 KiB as a map of Strings).
//!
//! Hand-written rather than a serde binary format: attribute values are an untagged enum,
//! which non-self-describing formats (postcard, bincode) cannot read back, and numbers that are
//! whole (most CRM numbers) take a varint instead of 8 bytes.
use crate::domain::assignment::{LeadContext, Terms};
use crate::domain::lead::{AttrValue, Attributes, Lead};
use crate::domain::routing::Needs;
use crate::error::{Error, Result};

/// First byte of the format; JSON contexts (older Redis data) start with `{`.
const VERSION: u8 = 1;

const BOOL_FALSE: u8 = 0;
const BOOL_TRUE: u8 = 1;
const NUMBER: u8 = 2;
const WHOLE: u8 = 3;
const STRING: u8 = 4;

/// A [`LeadContext`] packed by [`encode`], kept as one boxed slice. Cloning copies the bytes.
#[derive(Clone)]
pub struct PackedContext(Box<[u8]>);

impl std::fmt::Debug for PackedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedContext({} B)", self.0.len())
    }
}

impl PackedContext {
    pub fn pack(ctx: &LeadContext) -> PackedContext {
        PackedContext(encode(ctx).into_boxed_slice())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The whole context back, attributes included.
    pub fn unpack(&self) -> LeadContext {
        read(&self.0, true).unwrap_or_else(|_| unreachable_context())
    }

    /// Everything but the attributes (no map is built): what routing and reports need.
    pub fn head(&self) -> LeadContext {
        read(&self.0, false).unwrap_or_else(|_| unreachable_context())
    }

    /// The fixed fields and the first strings, borrowed: no allocation.
    pub fn view(&self) -> View<'_> {
        view(&self.0).unwrap_or_default()
    }

    /// The lead's required skills (its queue group); no allocation when it has none.
    pub fn required_skills(&self) -> Vec<String> {
        let mut r = Reader {
            bytes: &self.0,
            at: 0,
        };
        let mut skills = || -> Result<Vec<String>> {
            r.fixed()?;
            for _ in 0..4 {
                r.str()?;
            }
            let n = r.count()?;
            (0..n).map(|_| r.string()).collect()
        };
        skills().unwrap_or_default()
    }

    /// Heap bytes this context takes (what `store.memory_max_bytes` counts).
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

/// What [`PackedContext::view`] reads without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct View<'a> {
    pub probability: f64,
    pub expected_value: f64,
    pub terms: Terms,
    pub id: &'a str,
    pub pool: &'a str,
    pub segment: &'a str,
}

impl<'a> View<'a> {
    /// The same fields of an unpacked context.
    pub fn of(ctx: &'a LeadContext) -> View<'a> {
        View {
            probability: ctx.probability,
            expected_value: ctx.expected_value,
            terms: ctx.terms,
            id: &ctx.lead.id,
            pool: &ctx.needs.pool,
            segment: &ctx.segment,
        }
    }
}

fn view(bytes: &[u8]) -> Result<View<'_>> {
    let mut r = Reader { bytes, at: 0 };
    let (probability, expected_value, terms) = r.fixed()?;
    Ok(View {
        probability,
        expected_value,
        terms,
        id: r.str()?,
        pool: r.str()?,
        segment: r.str()?,
    })
}

/// `read` cannot fail on bytes `encode` wrote; should it ever, an empty context is safer than a
/// panic under the store's lock.
fn unreachable_context() -> LeadContext {
    debug_assert!(false, "a PackedContext that does not decode");
    LeadContext {
        lead: Lead {
            id: String::new(),
            attributes: Attributes::default(),
        },
        needs: Needs {
            pool: String::new(),
            required_skills: vec![],
            preferred: vec![],
        },
        probability: 0.0,
        segment: String::new(),
        model_version: String::new(),
        terms: Terms::default(),
        expected_value: 0.0,
    }
}

// Serialized as the plain context: the file store's snapshots and journal keep their format.
impl serde::Serialize for PackedContext {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.unpack().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PackedContext {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        LeadContext::deserialize(d).map(|c| PackedContext::pack(&c))
    }
}

/// Packs a context: fixed fields first (so [`PackedContext::probability`] is a read), then
/// strings as varint length + bytes, then the attributes.
pub fn encode(ctx: &LeadContext) -> Vec<u8> {
    let mut w = Vec::with_capacity(64 + ctx.lead.attributes.len() * 16);
    w.push(VERSION);
    w.extend_from_slice(&ctx.probability.to_le_bytes());
    w.extend_from_slice(&ctx.expected_value.to_le_bytes());
    let t = &ctx.terms;
    varint(&mut w, zigzag(t.offer_ms));
    varint(&mut w, u64::from(t.max_offers));
    varint(&mut w, zigzag(t.sla_ms));
    w.push(u8::from(t.sla_reassign));
    varint(&mut w, zigzag(t.queue_ttl_ms));
    for s in [
        &ctx.lead.id,
        &ctx.needs.pool,
        &ctx.segment,
        &ctx.model_version,
    ] {
        string(&mut w, s);
    }
    varint(&mut w, ctx.needs.required_skills.len() as u64);
    for s in &ctx.needs.required_skills {
        string(&mut w, s);
    }
    varint(&mut w, ctx.needs.preferred.len() as u64);
    for (s, weight) in &ctx.needs.preferred {
        string(&mut w, s);
        w.extend_from_slice(&weight.to_le_bytes());
    }
    varint(&mut w, ctx.lead.attributes.len() as u64);
    for (name, value) in &ctx.lead.attributes {
        string(&mut w, name);
        match value {
            AttrValue::Bool(b) => w.push(if *b { BOOL_TRUE } else { BOOL_FALSE }),
            AttrValue::Number(x) => match whole(*x) {
                Some(i) => {
                    w.push(WHOLE);
                    varint(&mut w, zigzag(i));
                }
                None => {
                    w.push(NUMBER);
                    w.extend_from_slice(&x.to_le_bytes());
                }
            },
            AttrValue::String(s) => {
                w.push(STRING);
                string(&mut w, s);
            }
        }
    }
    w
}

/// Reads a context a store kept: packed by [`encode`], or JSON (what Redis held before).
pub fn decode(bytes: &[u8]) -> Result<LeadContext> {
    match bytes.first() {
        Some(b'{') => serde_json::from_slice(bytes)
            .map_err(|e| Error::Internal(format!("a stored lead context: {e}"))),
        _ => read(bytes, true),
    }
}

/// A number that survives the trip through i64 exactly (and is not -0.0).
fn whole(x: f64) -> Option<i64> {
    let i = x as i64;
    (i as f64 == x && (i != 0 || x.is_sign_positive()) && i.unsigned_abs() < 1 << 53).then_some(i)
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn varint(w: &mut Vec<u8>, mut u: u64) {
    while u >= 0x80 {
        w.push((u as u8) | 0x80);
        u >>= 7;
    }
    w.push(u as u8);
}

fn string(w: &mut Vec<u8>, s: &str) {
    varint(w, s.len() as u64);
    w.extend_from_slice(s.as_bytes());
}

fn read(bytes: &[u8], attributes: bool) -> Result<LeadContext> {
    let mut r = Reader { bytes, at: 0 };
    let (probability, expected_value, terms) = r.fixed()?;
    let id = r.string()?;
    let pool = r.string()?;
    let segment = r.string()?;
    let model_version = r.string()?;
    let n = r.count()?;
    let mut required_skills = Vec::with_capacity(n);
    for _ in 0..n {
        required_skills.push(r.string()?);
    }
    let n = r.count()?;
    let mut preferred = Vec::with_capacity(n);
    for _ in 0..n {
        preferred.push((r.string()?, r.f64()?));
    }
    let mut map = Attributes::default();
    if attributes {
        let n = r.count()?;
        map.reserve(n);
        for _ in 0..n {
            let name = r.string()?;
            let value = match r.byte()? {
                BOOL_FALSE => AttrValue::Bool(false),
                BOOL_TRUE => AttrValue::Bool(true),
                NUMBER => AttrValue::Number(r.f64()?),
                WHOLE => AttrValue::Number(unzigzag(r.varint()?) as f64),
                STRING => AttrValue::String(r.string()?),
                _ => return Err(r.bad()),
            };
            map.insert(name, value);
        }
    }
    Ok(LeadContext {
        lead: Lead {
            id,
            attributes: map,
        },
        needs: Needs {
            pool,
            required_skills,
            preferred,
        },
        probability,
        segment,
        model_version,
        terms,
        expected_value,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self) -> Error {
        Error::Internal(format!(
            "a stored lead context does not decode at byte {} of {}",
            self.at,
            self.bytes.len()
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.bad());
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        Ok(f64::from_le_bytes(b.try_into().map_err(|_| self.bad())?))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut u = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            u |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(u);
            }
        }
        Err(self.bad())
    }

    /// A count of items still to read; each takes at least a byte, which bounds the
    /// allocation a corrupt count could ask for.
    fn count(&mut self) -> Result<usize> {
        let n = usize::try_from(self.varint()?).map_err(|_| self.bad())?;
        if n > self.bytes.len() - self.at {
            return Err(self.bad());
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.count()?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| self.bad())
    }

    fn string(&mut self) -> Result<String> {
        self.str().map(str::to_string)
    }

    /// The version byte, probability, expected value and terms.
    fn fixed(&mut self) -> Result<(f64, f64, Terms)> {
        if self.byte()? != VERSION {
            return Err(self.bad());
        }
        let probability = self.f64()?;
        let expected_value = self.f64()?;
        let terms = Terms {
            offer_ms: unzigzag(self.varint()?),
            max_offers: u32::try_from(self.varint()?).map_err(|_| self.bad())?,
            sla_ms: unzigzag(self.varint()?),
            sla_reassign: self.byte()? != 0,
            queue_ttl_ms: unzigzag(self.varint()?),
        };
        Ok((probability, expected_value, terms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> LeadContext {
        let attributes = [
            ("age", AttrValue::Number(41.0)),
            ("rate", AttrValue::Number(-1.8)),
            ("neg", AttrValue::Number(-0.0)),
            ("big", AttrValue::Number(1e300)),
            ("job", AttrValue::String("admin.".into())),
            ("owner", AttrValue::Bool(true)),
            ("loan", AttrValue::Bool(false)),
            ("empty", AttrValue::String(String::new())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        LeadContext {
            lead: Lead {
                id: "lead-é-1".into(),
                attributes,
            },
            needs: Needs {
                pool: "emea".into(),
                required_skills: vec!["german".into(), "enterprise".into()],
                preferred: vec![("fintech".into(), 0.5)],
            },
            probability: 0.8125,
            segment: "hot".into(),
            model_version: "bank-1".into(),
            terms: Terms {
                offer_ms: 30_000,
                max_offers: 3,
                sla_ms: -5,
                sla_reassign: true,
                queue_ttl_ms: i64::MAX,
            },
            expected_value: 1250.5,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let c = context();
        let p = PackedContext::pack(&c);
        assert_eq!(p.unpack(), c);
        assert_eq!(decode(p.as_bytes()).unwrap(), c);
        let v = p.view();
        assert_eq!(
            (v.probability, v.id, v.pool, v.segment),
            (0.8125, "lead-é-1", "emea", "hot")
        );
        assert_eq!((v.expected_value, v.terms), (1250.5, c.terms));
        assert_eq!(p.required_skills(), c.needs.required_skills);
        assert_eq!(View::of(&c), v);
        let head = p.head();
        assert!(head.lead.attributes.is_empty());
        assert_eq!(head.needs, c.needs);
        assert_eq!(head.terms, c.terms);
        // -0.0 keeps its sign (a whole-number varint would lose it).
        let neg = p.unpack().lead.attributes["neg"].clone();
        assert!(matches!(neg, AttrValue::Number(x) if x == 0.0 && x.is_sign_negative()));
    }

    #[test]
    fn is_several_times_smaller_than_json() {
        let c = context();
        let json = serde_json::to_vec(&c).unwrap();
        let packed = encode(&c);
        assert!(
            packed.len() * 2 < json.len(),
            "{} vs {}",
            packed.len(),
            json.len()
        );
    }

    #[test]
    fn reads_json_contexts_too() {
        let c = context();
        assert_eq!(decode(&serde_json::to_vec(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = encode(&context());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            for b in [0u8, 0x7f, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = b;
                let _ = decode(&bad);
            }
        }
    }

    #[test]
    fn serializes_as_the_plain_context() {
        let c = context();
        let p = PackedContext::pack(&c);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<LeadContext>(&json).unwrap(), c);
        let back: PackedContext = serde_json::from_str(&json).unwrap();
        assert_eq!(back.unpack(), c);
    }
}
