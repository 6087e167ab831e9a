//! One module per command and modality. A command module parses nothing (its arguments
//! arrive typed from `crate::args`), holds no run logic (that is the library's), and
//! imports no other command module: what two commands share is in `crate::common` or in
//! the library.

pub mod attack_image;
pub mod attack_text;
pub mod audit;
pub mod bench;
pub mod eval_filter;
pub mod eval_image;
pub mod eval_text;
pub mod export;
pub mod report;
pub mod train_image;
pub mod train_text;
