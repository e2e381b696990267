//! The run-started record's body: the effective spec, and since kind 11 the graph
//! compiled from it, which the binary encoding carries and the JSON rendering leaves out.

use serde::{Deserialize, Serialize, Serializer};

use crate::graph::GraphImage;
use crate::record::Digest;

/// The code of a run-started record that carries its compiled graph (`image`); one
/// without it keeps code 1. A field added is a new kind: an older orch refuses the record
/// by its code instead of misreading it.
pub const RUN_STARTED_COMPILED: u16 = 11;

/// The run began. Carries the effective spec (defaults resolved, CLI overrides applied)
/// as canonical JSON, so the log alone is enough to replay the run; and, since kind 11,
/// the graph compiled from it (`GraphImage`), so that a fold need not compile it. The
/// image is derived data and is left out of the JSON rendering.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunStarted {
    pub spec: String,
    pub spec_digest: Digest,
    /// One of `EXECUTORS`.
    pub executor: String,
    #[serde(default)]
    pub image: Option<Box<GraphImage>>,
}

impl Serialize for RunStarted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let image = self.image.as_ref().filter(|_| !s.is_human_readable());
        let mut st = s.serialize_struct("RunStarted", 3 + image.is_some() as usize)?;
        st.serialize_field("spec", &self.spec)?;
        st.serialize_field("spec_digest", &self.spec_digest)?;
        st.serialize_field("executor", &self.executor)?;
        if let Some(image) = image {
            st.serialize_field("image", image)?;
        }
        st.end()
    }
}
