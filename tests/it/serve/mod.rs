//! `serve` as users run it: the real binary, one module per concern.

mod command_line;
mod conda_fallback;
mod config_file;
mod lifecycle;
mod memory;
mod tls;
mod write_dir;
