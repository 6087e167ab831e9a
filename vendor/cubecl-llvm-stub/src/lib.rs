//! cubecl-llvm 0.11.3's interface as cubecl-cuda 0.11.3 uses it, without LLVM.
//!
//! advtrain's GPU build makes cubecl-cuda compile every kernel as CUDA C++ through NVRTC
//! (cubecl-cuda's `cpp` feature), so the LLVM compiler is never selected; this crate lets
//! cubecl-cuda build without downloading the LLVM bundle that the real cubecl-llvm links.
//! See README.md beside this crate.

pub mod nvptx;
pub mod shared;

pub use shared::{LlvmTarget, NvptxModule, PlironArtifact, PlironCompiler, PlironOptions};
