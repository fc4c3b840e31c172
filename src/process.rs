//! Running programs whose inputs and outputs are FIFO paths.
