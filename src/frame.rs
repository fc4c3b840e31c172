//! Message framing for FIFOs: newline-delimited and length-prefixed codecs.
