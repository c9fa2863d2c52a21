//! How the cache keeps a child: its compact JSON, deflated against a primer of its kind.
//!
//! Deflate on its own does little for a small object: most of a `ConfigMap`'s or a
//! `StatefulSet`'s JSON is keys, label names and owner references that occur once in it.
//! They occur in every child of the kind, though. So each kind keeps one primer, the text
//! of the first child it cached, and a child is deflated as the continuation of a stream
//! that began with the primer: its repeated parts become back-references into the primer
//! (zlib's preset dictionary, which `miniz_oxide` does not offer, done by hand).
//!
//! The stream is cut with a sync flush where the primer ends, so its deflated head is the
//! same bytes for every child of the kind and is kept once; each child keeps only what
//! follows. A read joins the two, inflates, and drops the primer's text.

use miniz_oxide::{
    DataFormat,
    deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output},
};

/// How hard the cache deflates: the default level, about 4% smaller than the fastest
/// on Kubernetes objects, and still tens of microseconds for a large child.
const LEVEL: u8 = 6;

/// At most this much of the first child becomes the primer: deflate looks back 32 KiB,
/// so a longer primer would be out of reach of most of the child anyway.
const PRIMER_MAX: usize = 16 * 1024;

/// The text every child of a kind is deflated after, and its deflated form.
pub(super) struct Primer {
    text: Box<[u8]>,
    head: Box<[u8]>,
}

impl Primer {
    /// A primer from a child's JSON (`secret`: leave out its data, which is not shared by
    /// other children and should not outlive the child in memory).
    pub(super) fn from_child(json: &[u8], secret: bool) -> Option<Self> {
        let mut text = if secret {
            let mut value: serde_json::Value = serde_json::from_slice(json).ok()?;
            if let Some(object) = value.as_object_mut() {
                object.remove("data");
                object.remove("stringData");
            }
            serde_json::to_vec(&value).ok()?
        } else {
            json.to_vec()
        };
        text.truncate(PRIMER_MAX);
        let (mut head, split) = deflate(&text, &[])?;
        // What follows the cut is the end of an empty stream, which no child keeps.
        head.truncate(split);
        Some(Primer {
            text: text.into_boxed_slice(),
            head: head.into_boxed_slice(),
        })
    }
}

#[cfg(test)]
impl Primer {
    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }
}

/// One cached child.
pub(super) struct Entry {
    /// Its `resourceVersion` as a number.
    pub(super) version: Option<u64>,
    /// The length of its JSON text.
    pub(super) len: usize,
    /// Its JSON text, deflated (after the kind's primer, if `primed`).
    pub(super) deflated: Box<[u8]>,
    primed: bool,
}

impl Entry {
    /// `json` packed, after `primer` when there is one.
    pub(super) fn pack(version: Option<u64>, json: &[u8], primer: Option<&Primer>) -> Self {
        let tail = primer.and_then(|primer| {
            let (stream, split) = deflate(&primer.text, json)?;
            // Deflate is deterministic, so the stream starts with the primer's head; if it
            // ever did not, the child is kept on its own.
            (stream.get(..split) == Some(&primer.head[..])).then(|| stream[split..].into())
        });
        let (deflated, after_primer) = match tail {
            Some(tail) => (tail, true),
            None => (
                miniz_oxide::deflate::compress_to_vec(json, LEVEL).into_boxed_slice(),
                false,
            ),
        };
        Entry {
            version,
            len: json.len(),
            deflated,
            primed: after_primer,
        }
    }

    /// The child's JSON text, or `None` if it does not inflate (then the server is asked).
    pub(super) fn unpack(&self, primer: Option<&Primer>) -> Option<Vec<u8>> {
        if !self.primed {
            return miniz_oxide::inflate::decompress_to_vec_with_limit(&self.deflated, self.len)
                .ok();
        }
        let primer = primer?;
        let mut stream = Vec::with_capacity(primer.head.len() + self.deflated.len());
        stream.extend_from_slice(&primer.head);
        stream.extend_from_slice(&self.deflated);
        let mut text = miniz_oxide::inflate::decompress_to_vec_with_limit(
            &stream,
            primer.text.len() + self.len,
        )
        .ok()?;
        if text.get(..primer.text.len()) != Some(&primer.text[..]) {
            return None;
        }
        text.drain(..primer.text.len());
        Some(text)
    }
}

/// `primer` then `json` as one raw deflate stream, cut by a sync flush after `primer`;
/// and where the cut is.
fn deflate(primer: &[u8], json: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut compressor = CompressorOxide::default();
    compressor.set_format_and_level(DataFormat::Raw, LEVEL);
    let mut stream = Vec::with_capacity(primer.len() / 2 + json.len() / 2 + 64);
    let (status, read) = compress_to_output(&mut compressor, primer, TDEFLFlush::Sync, |bytes| {
        stream.extend_from_slice(bytes);
        true
    });
    if status != TDEFLStatus::Okay || read != primer.len() {
        return None;
    }
    let split = stream.len();
    let (status, read) = compress_to_output(&mut compressor, json, TDEFLFlush::Finish, |bytes| {
        stream.extend_from_slice(bytes);
        true
    });
    (status == TDEFLStatus::Done && read == json.len()).then_some((stream, split))
}
