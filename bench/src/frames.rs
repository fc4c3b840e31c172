//! Whole fixed-size units out of a byte stream that reads cut anywhere:
//! the one reassembler of the checkers and readers that take 64-byte
//! lines, frames or messages (mux, fan-out, hand-off, hub).

/// Bytes of a unit that the end of a read cut, completed by the next.
#[derive(Debug)]
pub struct Frames {
    size: usize,
    partial: Vec<u8>,
}

impl Frames {
    /// Units of `size` bytes (not 0).
    pub fn new(size: usize) -> Frames {
        Frames {
            size: size.max(1),
            partial: Vec::with_capacity(size),
        }
    }

    /// Hands every whole unit of the stream so far to `each`, in order:
    /// the one the last call left cut first, then those of `data`; keeps
    /// what is left of `data`. Stops at the first error of `each`.
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.partial.is_empty() {
            let take = (self.size - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < self.size {
                return Ok(());
            }
            let unit = std::mem::take(&mut self.partial);
            let done = each(&unit);
            // The buffer is kept for the next cut unit.
            self.partial = unit;
            self.partial.clear();
            done?;
        }
        let mut units = data.chunks_exact(self.size);
        for unit in &mut units {
            each(unit)?;
        }
        self.partial.extend_from_slice(units.remainder());
        Ok(())
    }

    /// Bytes of a cut unit held: 0 when the stream ended on a boundary.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_whole_once_in_order_in_any_cut() {
        let stream: Vec<u8> = (0..=255u8).cycle().take(10 * 64 + 5).collect();
        for cut in [1, 7, 63, 64, 65, 300, 1000] {
            let mut f = Frames::new(64);
            let mut got: Vec<u8> = Vec::new();
            for piece in stream.chunks(cut) {
                f.feed(piece, |u| {
                    assert_eq!(u.len(), 64);
                    got.extend_from_slice(u);
                    Ok::<(), ()>(())
                })
                .expect("no error");
            }
            assert_eq!(got[..], stream[..640], "cut {cut}");
            assert_eq!(f.pending(), 5, "cut {cut}");
        }
    }

    #[test]
    fn an_error_stops_the_stream() {
        let mut f = Frames::new(4);
        let mut seen = 0;
        let r = f.feed(&[0; 12], |_| {
            seen += 1;
            if seen == 2 { Err("second") } else { Ok(()) }
        });
        assert_eq!((r, seen), (Err("second"), 2));
    }
}
