//! An `objects` reply encoded as bpfnsd converts the objects, one at a time.
//!
//! A listing of 100 000 maps held three times over (the kernel's listing, the
//! [`ObjectInfo`]s, the frame) was most of bpfnsd's peak memory. [`EncodedObjects`] takes each
//! object as it is made and writes it into the frame, which grows once to its estimated size
//! instead of doubling; the frame is byte for byte what [`encode`](crate::encode) writes for
//! the same [`Response`].

use crate::frame::FrameError;
use crate::ns_listing::ListingFrame;
use crate::{ObjectInfo, Reply, Response};

/// Objects written before the rest of the frame is reserved from their average size.
const SAMPLE: usize = 64;

/// The frame of an `objects` reply, written object by object.
#[derive(Debug)]
pub struct EncodedObjects {
    frame: ListingFrame,
    /// Objects still to come (as told), for the reservation after [`SAMPLE`].
    expected: usize,
    /// Bytes before the first object.
    head: usize,
}

impl EncodedObjects {
    /// A reply to request `seq` that will hold about `expected` objects.
    pub fn new(seq: u64, expected: usize) -> Result<Self, FrameError> {
        let empty = Response::ok(seq, Reply::Objects { objects: vec![] });
        let frame = ListingFrame::new(&empty, SAMPLE.min(expected) * 512)?;
        let head = frame.written();
        Ok(Self {
            frame,
            expected,
            head,
        })
    }

    /// Add an object.
    pub fn push(&mut self, object: &ObjectInfo) -> Result<(), FrameError> {
        serde_json::to_writer(&mut *self.frame.next_item(), object)?;
        let n = self.len();
        if n == SAMPLE && self.expected > n {
            let average = (self.frame.written() - self.head) / n + 1;
            // A tenth more than the average says: a frame that grew by doubling held two
            // copies of itself at the end.
            self.frame.reserve((self.expected - n) * average * 11 / 10);
        }
        Ok(())
    }

    /// Objects pushed.
    pub fn len(&self) -> usize {
        self.frame.count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished frame (header and body), as [`encode`](crate::encode) with the limit
    /// `max` writes it.
    pub fn into_frame(self, max: usize) -> Result<Vec<u8>, FrameError> {
        self.frame.finish(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, ObjectDetails, HEADER_LEN, MAX_RESPONSE};
    use bpfns_model::{NsId, ObjectKind};

    fn object(id: u32) -> ObjectInfo {
        ObjectInfo {
            id,
            kind: ObjectKind::Map,
            type_name: "hash".into(),
            name: format!("m\"{id}\\"),
            namespace: "/t".into(),
            ns_id: NsId(3),
            prog_id: id.is_multiple_of(2).then_some(id + 1),
            details: ObjectDetails {
                max_entries: Some(id),
                ..Default::default()
            },
        }
    }

    /// Written object by object (across the reservation), a listing is byte for byte what
    /// `encode` writes for the same response.
    #[test]
    fn a_listing_written_in_parts_is_the_encoded_response() {
        for (count, expected) in [(0, 0), (1, 1), (3, 1000), (200, 200), (200, 10)] {
            let objects: Vec<_> = (1..=count).map(object).collect();
            let mut parts = EncodedObjects::new(9, expected).unwrap();
            for o in &objects {
                parts.push(o).unwrap();
            }
            assert_eq!(parts.len(), objects.len());
            let frame = parts.into_frame(MAX_RESPONSE).unwrap();
            let want = encode(&Response::ok(9, Reply::Objects { objects }), MAX_RESPONSE);
            assert_eq!(frame, want.unwrap(), "{count} objects");
            assert!(frame.len() > HEADER_LEN);
        }
    }

    #[test]
    fn a_listing_over_the_limit_is_refused() {
        let mut parts = EncodedObjects::new(1, 1).unwrap();
        parts.push(&object(1)).unwrap();
        assert!(matches!(
            parts.into_frame(100),
            Err(FrameError::TooLarge { max: 100, .. })
        ));
    }
}
