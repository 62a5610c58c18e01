//! A `namespaces` reply encoded as bpfnsd gathers it.
//!
//! Most of a namespace's [`NsInfo`] comes from the registry alone (its path, parent, bpffs,
//! policies, limits): bpfnsd encodes that part once ([`EncodedDescription`]) and keeps it
//! until the registry changes, so that a listing of 10 000 namespaces encodes only what
//! changes with objects and members ([`NsUsage`]). [`EncodedNamespaces`] writes the frame
//! namespace by namespace; it holds exactly the bytes [`encode`] writes for the same
//! [`Response`] (the field order is [`NsInfo`]'s: description, then usage).

use crate::frame::{encode, FrameError, HEADER_LEN};
use crate::{NsInfo, NsUsage, Reply, Response};

/// A namespace's description ([`NsInfo`] less its [`NsUsage`]) encoded: the fields of a JSON
/// object, without its braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedDescription(Box<str>);

impl EncodedDescription {
    /// The description of `info` (its usage is left out).
    pub fn of(info: &NsInfo) -> Result<Self, FrameError> {
        let json = serde_json::to_string(&info.description())?;
        Ok(Self(fields_of(&json).into()))
    }

    /// Bytes it takes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The fields of the JSON object `object`, without its braces.
fn fields_of(object: &str) -> &str {
    object
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_default()
}

/// The frame of a `namespaces` reply, written namespace by namespace.
#[derive(Debug)]
pub struct EncodedNamespaces {
    frame: ListingFrame,
}

impl EncodedNamespaces {
    /// A reply to request `seq`, room made for `bytes` of namespaces.
    pub fn new(seq: u64, bytes: usize) -> Result<Self, FrameError> {
        let empty = Response::ok(seq, Reply::Namespaces { namespaces: vec![] });
        Ok(Self {
            frame: ListingFrame::new(&empty, bytes)?,
        })
    }

    /// Add a namespace: its `description` and `usage`.
    pub fn push(
        &mut self,
        description: &EncodedDescription,
        usage: &NsUsage,
    ) -> Result<(), FrameError> {
        let frame = self.frame.next_item();
        frame.push(b'{');
        frame.extend_from_slice(description.0.as_bytes());
        let at = frame.len();
        serde_json::to_writer(&mut *frame, usage)?;
        // The usage's object becomes the rest of the namespace's: `{` is a separator now
        // (or, with no field to write, both braces go but the closing one).
        if frame.len() - at == 2 {
            frame.truncate(at + 1);
            frame[at] = b'}';
        } else if !description.is_empty() {
            frame[at] = b',';
        } else {
            frame.remove(at);
        }
        Ok(())
    }

    /// Namespaces pushed.
    pub fn len(&self) -> usize {
        self.frame.count()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.count() == 0
    }

    /// The finished frame (header and body), as [`encode`] with the limit `max` writes it.
    pub fn into_frame(self, max: usize) -> Result<Vec<u8>, FrameError> {
        self.frame.finish(max)
    }
}

/// The frame of a response whose reply holds one listing (an array), written item by item:
/// the response encoded with an empty listing, cut at its `[]`.
#[derive(Debug)]
pub(crate) struct ListingFrame {
    /// The frame so far: header (its length still zero), the response up to the listing,
    /// the items written.
    frame: Vec<u8>,
    /// What follows the listing (closing the reply and the response).
    tail: Vec<u8>,
    /// Items written.
    count: usize,
}

impl ListingFrame {
    /// For `empty`, a response with an empty listing; room made for `bytes` of items.
    pub(crate) fn new(empty: &Response, bytes: usize) -> Result<Self, FrameError> {
        let empty = encode(empty, usize::MAX)?;
        let at = empty
            .windows(2)
            .rposition(|w| w == b"[]")
            .expect("a listing reply holds its listing");
        let mut frame = Vec::with_capacity(empty.len() + bytes);
        frame.extend_from_slice(&empty[..=at]);
        frame[..HEADER_LEN].fill(0);
        Ok(Self {
            frame,
            tail: empty[at + 1..].to_vec(),
            count: 0,
        })
    }

    /// The frame, ready for the next item to be written at its end (after a separator).
    pub(crate) fn next_item(&mut self) -> &mut Vec<u8> {
        if self.count > 0 {
            self.frame.push(b',');
        }
        self.count += 1;
        &mut self.frame
    }

    /// Items written.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> usize {
        self.frame.len()
    }

    /// Make room for `bytes` more.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.frame.reserve(bytes);
    }

    /// The finished frame, as [`encode`] with the limit `max` writes it.
    pub(crate) fn finish(self, max: usize) -> Result<Vec<u8>, FrameError> {
        let mut frame = self.frame;
        frame.extend_from_slice(&self.tail);
        let len = frame.len() - HEADER_LEN;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        frame[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::{full_namespace, sparse_namespace};
    use crate::{decode_response, Outcome, MAX_RESPONSE};

    /// Written namespace by namespace, a listing is byte for byte what `encode` writes for
    /// the same response, and decodes to the same namespaces.
    #[test]
    fn a_listing_written_in_parts_is_the_encoded_response() {
        let mut no_usage = sparse_namespace();
        no_usage.set_usage(NsUsage::default());
        let lists = [
            vec![],
            vec![full_namespace()],
            vec![full_namespace(), sparse_namespace(), no_usage],
        ];
        for (seq, namespaces) in lists.into_iter().enumerate() {
            let seq = seq as u64 + 7;
            let mut parts = EncodedNamespaces::new(seq, 0).unwrap();
            for n in &namespaces {
                parts
                    .push(&EncodedDescription::of(n).unwrap(), &n.usage())
                    .unwrap();
            }
            assert_eq!(parts.len(), namespaces.len());
            let frame = parts.into_frame(MAX_RESPONSE).unwrap();
            let response = Response::ok(
                seq,
                Reply::Namespaces {
                    namespaces: namespaces.clone(),
                },
            );
            let want = encode(&response, MAX_RESPONSE).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&frame),
                String::from_utf8_lossy(&want)
            );
            let back = decode_response(&frame[HEADER_LEN..]).unwrap();
            let Outcome::Ok(Reply::Namespaces { namespaces: back }) = back.result else {
                panic!("not a namespace listing: {back:?}");
            };
            // Decoding completes the effective policy (left out when it is the own one).
            let completed: Vec<NsInfo> = namespaces
                .into_iter()
                .map(|mut n| {
                    n.effective_policy = n.effective_policy.or(Some(n.policy));
                    n
                })
                .collect();
            assert_eq!(back, completed);
        }
    }

    /// A listing over the limit is refused, as `encode` refuses it.
    #[test]
    fn a_listing_over_the_limit_is_refused() {
        let mut parts = EncodedNamespaces::new(1, 0).unwrap();
        let n = full_namespace();
        parts
            .push(&EncodedDescription::of(&n).unwrap(), &n.usage())
            .unwrap();
        assert!(matches!(
            parts.into_frame(100),
            Err(FrameError::TooLarge { max: 100, .. })
        ));
    }
}
