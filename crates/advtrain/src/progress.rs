//! Progress reporting without a UI dependency: the library reports, the CLI draws bars.

/// Receives progress from long loops (training epochs, evaluation passes).
pub trait Progress {
    /// A new loop of `total` items (images) begins.
    fn begin(&self, _label: &str, _total: u64) {}
    /// `n` more items are done; `status` is a short live summary (loss, robust so far).
    fn advance(&self, _n: u64, _status: &str) {}
    /// The loop is over.
    fn end(&self) {}
    /// A message that must stay visible (printed above any bar).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}
