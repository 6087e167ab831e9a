//! What a person sees: adversarial-example grids (and, later, the HTML report).

mod examples;

pub use examples::{adversarial_grid, load_examples, save_examples, AdversarialExamples};
