//! The PTX version cubecl-cuda chooses for the driver (upstream code, unchanged).
pub mod ptx_version;
