//! What the scenarios of numbered chunks (throughput, relay) share: their
//! configuration and how its runs become figures.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use super::engines::{EngineWork, RunResult};
use crate::report::{Metrics, Params};
use crate::spec::{Flow, Shape, Unit};

/// A scenario of numbered chunks: its name, and where its chunks go.
pub trait Chunked {
    const NAME: &'static str;
    fn flow() -> Flow;
}

/// One configuration: `chunk`-byte writes, `total_bytes` in all.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Chunks<S> {
    pub chunk: usize,
    pub total_bytes: u64,
    #[serde(skip)]
    scenario: PhantomData<S>,
}

impl<S> Chunks<S> {
    pub fn new(chunk: usize, total_bytes: u64) -> Chunks<S> {
        Chunks {
            chunk,
            total_bytes,
            scenario: PhantomData,
        }
    }
}

impl<S: Chunked> EngineWork for Chunks<S> {
    fn scenario(&self) -> &'static str {
        S::NAME
    }

    fn shape(&self) -> Shape {
        Shape {
            flow: S::flow(),
            bytes_per_input: self.total_bytes,
            unit: Unit::Chunk(self.chunk),
        }
    }

    fn short(&self) -> String {
        format!("{}B", self.chunk)
    }

    fn params(&self, _: usize) -> Params {
        Params::from([
            ("chunk_bytes".into(), self.chunk.into()),
            ("total_bytes".into(), self.total_bytes.into()),
        ])
    }

    fn metrics(&self, r: &RunResult) -> Metrics {
        r.chunk_metrics()
    }

    fn load(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
