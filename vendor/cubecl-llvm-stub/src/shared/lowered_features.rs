//! Feature restriction for the LLVM compiler.

use cubecl_core::ir::DeviceProperties;

/// The GPU targets the LLVM compiler lowers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    Nvptx,
    AmdGpu,
}

/// Upstream removes the device features the LLVM compiler cannot emit. cubecl-cuda calls it
/// only when LLVM is its compiler, which this build never is (NVRTC compiles the kernels and
/// supports everything cubecl-cuda advertises), so the properties stay as they are.
pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
