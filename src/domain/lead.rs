//! A lead: a validated id plus typed attributes. Validation lives in the constructors.
use std::collections::HashMap;

use crate::error::Error;

/// Longest accepted lead or rep id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most attributes one lead may carry.
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 64;
/// Longest string attribute value, in bytes.
pub const MAX_STRING_VALUE_LEN: usize = 1024;

/// A typed attribute value as it arrives over the API or from a CSV cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Number(f64),
    String(String),
}

impl AttrValue {
    /// Reads the value as a number: numbers as they are, bools as 0/1, numeric strings parsed.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            AttrValue::Number(x) => Some(*x),
            AttrValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            AttrValue::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        }
    }

    /// Reads the value as a bool: "true/yes/1" and "false/no/0" strings, numbers 0/1.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            AttrValue::Number(x) if *x == 1.0 => Some(true),
            AttrValue::Number(x) if *x == 0.0 => Some(false),
            AttrValue::Number(_) => None,
            AttrValue::String(s) => parse_bool(s),
        }
    }

    /// Writes the value as category text into `buf` (cleared first) and returns it; no allocation
    /// for strings, which are the usual case.
    pub fn category<'a>(&'a self, buf: &'a mut String) -> &'a str {
        match self {
            AttrValue::String(s) => s.as_str(),
            AttrValue::Bool(b) => {
                if *b {
                    "true"
                } else {
                    "false"
                }
            }
            AttrValue::Number(x) => {
                use std::fmt::Write;
                buf.clear();
                let _ = write!(buf, "{x}");
                buf.as_str()
            }
        }
    }
}

/// Parses the usual spellings of a boolean, case-insensitively.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "t" => Some(true),
        "false" | "no" | "n" | "0" | "f" => Some(false),
        _ => None,
    }
}

/// Checks an id (lead or rep): non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
/// A pool name: an id without braces (braces would break the Redis hash tag `{pool}`).
pub fn validate_pool(field: &str, pool: &str) -> Result<(), Error> {
    validate_id(field, pool)?;
    if pool.contains(['{', '}']) {
        return Err(Error::invalid(field, "a pool name has no braces"));
    }
    Ok(())
}

pub fn validate_id(field: &str, id: &str) -> Result<(), Error> {
    if id.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, the limit is {MAX_ID_LEN}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A lead's attributes. foldhash instead of SipHash: hashing attribute names was ~5 % of a
/// ScoreLead's server time (BENCHMARKS.md), and with at most `MAX_ATTRIBUTES` entries per lead
/// a crafted collision cannot cost much; foldhash still seeds per process.
pub type Attributes = HashMap<String, AttrValue, foldhash::fast::RandomState>;

/// A validated lead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lead {
    pub id: String,
    pub attributes: Attributes,
}

impl Lead {
    /// A test lead "l" with these attributes (unvalidated).
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, AttrValue)]) -> Lead {
        Lead {
            id: "l".into(),
            attributes: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Validates the id and every attribute; the error names the offending field.
    pub fn parse(id: String, attributes: Attributes) -> Result<Lead, Error> {
        validate_id("lead.id", &id)?;
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(Error::invalid(
                "lead.attributes",
                format!(
                    "has {} entries, the limit is {MAX_ATTRIBUTES}",
                    attributes.len()
                ),
            ));
        }
        for (name, value) in &attributes {
            if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_LEN {
                return Err(Error::invalid(
                    "lead.attributes",
                    format!("attribute names must be 1..={MAX_ATTRIBUTE_NAME_LEN} bytes"),
                ));
            }
            let field = || format!("lead.attributes[{name}]");
            match value {
                AttrValue::Number(x) if !x.is_finite() => {
                    return Err(Error::invalid(field(), "must be a finite number"));
                }
                AttrValue::String(s) if s.len() > MAX_STRING_VALUE_LEN => {
                    return Err(Error::invalid(
                        field(),
                        format!("is {} bytes, the limit is {MAX_STRING_VALUE_LEN}", s.len()),
                    ));
                }
                _ => {}
            }
        }
        Ok(Lead { id, attributes })
    }

    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn rejects_bad_ids_naming_the_field() {
        for bad in ["", "   ", &"x".repeat(129), "a\nb"] {
            let err = Lead::parse(bad.to_string(), Attributes::default()).unwrap_err();
            assert!(err.to_string().contains("lead.id"), "{err}");
        }
        assert!(Lead::parse("x".repeat(128), Attributes::default()).is_ok());
    }

    #[test]
    fn rejects_non_finite_numbers() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err =
                Lead::parse("l1".into(), attrs(&[("age", AttrValue::Number(x))])).unwrap_err();
            assert!(err.to_string().contains("lead.attributes[age]"), "{err}");
        }
    }

    #[test]
    fn rejects_too_many_attributes() {
        let many = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("a{i}"), AttrValue::Bool(true)))
            .collect();
        let err = Lead::parse("l1".into(), many).unwrap_err();
        assert!(err.to_string().contains("lead.attributes"), "{err}");
    }

    #[test]
    fn reads_values_leniently() {
        assert_eq!(AttrValue::String(" 42 ".into()).as_number(), Some(42.0));
        assert_eq!(AttrValue::String("NaN".into()).as_number(), None);
        assert_eq!(AttrValue::String("Yes".into()).as_bool(), Some(true));
        assert_eq!(AttrValue::Number(2.0).as_bool(), None);
        let mut buf = String::new();
        assert_eq!(AttrValue::Number(3.0).category(&mut buf), "3");
    }
}
