//! Requests as pre-encoded bytes: the generator spends its CPU on HTTP/2, not on protobuf.
//! Each lead row is encoded once with a fixed-width id; a request copies the row's bytes and
//! writes its sequence number into the id.
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::grpc::pb;

/// Digits of the sequence number in a bench lead id.
const DIGITS: usize = 12;

/// The lead id of request `n` in run `run`: fixed width, so every encoding has one length.
pub fn lead_id(run: u64, n: u64) -> String {
    format!("b{run:x}-{n:0DIGITS$}")
}

/// One encoded request and where its id's sequence number sits.
struct Template {
    bytes: Vec<u8>,
    at: usize,
}

/// Encoded requests for every lead row; `body` wraps a lead in the request message.
pub struct Templates {
    rows: Vec<Template>,
}

impl Templates {
    pub fn new(leads: &[pb::Lead], run: u64, body: impl Fn(pb::Lead) -> Vec<u8>) -> Templates {
        let id = lead_id(run, 0);
        let rows = leads
            .iter()
            .filter_map(|l| {
                let mut l = l.clone();
                l.id = id.clone();
                let bytes = body(l);
                let at = find(&bytes, id.as_bytes())? + id.len() - DIGITS;
                Some(Template { bytes, at })
            })
            .collect();
        Templates { rows }
    }

    /// Request `n`: row `n mod rows` with id `lead_id(run, n)`.
    pub fn request(&self, n: u64) -> Bytes {
        if self.rows.is_empty() {
            return Bytes::new();
        }
        let t = &self.rows[(n % self.rows.len() as u64) as usize];
        let mut v = t.bytes.clone();
        let mut x = n;
        for d in v[t.at..t.at + DIGITS].iter_mut().rev() {
            *d = b'0' + (x % 10) as u8;
            x /= 10;
        }
        Bytes::from(v)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `Bytes` as they are and decodes answers as `D` (`()` skips every field).
pub struct RawCodec<D>(std::marker::PhantomData<D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

pub struct RawEncoder;
pub struct RawDecoder<D>(std::marker::PhantomData<D>);

impl<D: Message + Default + Send + 'static> Codec for RawCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder<D>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder<D> {
        RawDecoder(std::marker::PhantomData)
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<D: Message + Default> Decoder for RawDecoder<D> {
    type Item = D;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let d = D::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Some(d))
    }
}

/// A SubmitLeads answer read only as far as the generator needs: the lead and whether it
/// failed (the decision's fields are skipped, not decoded).
#[derive(Clone, PartialEq, Message)]
pub struct StreamAnswer {
    #[prost(string, tag = "1")]
    pub lead_id: String,
    #[prost(message, optional, tag = "3")]
    pub error: Option<pb::LeadError>,
}

pub fn score_body(lead: pb::Lead) -> Vec<u8> {
    pb::ScoreLeadRequest { lead: Some(lead) }.encode_to_vec()
}

pub fn submit_body(lead: pb::Lead) -> Vec<u8> {
    pb::SubmitLeadRequest {
        lead: Some(lead),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_their_sequence_number_in_the_lead_id() {
        let lead = pb::Lead {
            id: String::new(),
            attributes: [(
                "age".to_string(),
                pb::AttributeValue {
                    kind: Some(pb::attribute_value::Kind::NumberValue(41.0)),
                },
            )]
            .into(),
        };
        let t = Templates::new(&[lead.clone(), lead], 0xabc, submit_body);
        for n in [0, 7, 123_456_789_012] {
            let req = pb::SubmitLeadRequest::decode(t.request(n)).unwrap();
            let got = req.lead.unwrap();
            assert_eq!(got.id, lead_id(0xabc, n));
            assert_eq!(got.attributes.len(), 1);
        }
        assert_eq!(lead_id(1, 5), "b1-000000000005");
    }
}
