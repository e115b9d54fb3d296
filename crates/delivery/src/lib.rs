//! The sans-IO delivery engine (work in progress).
#![forbid(unsafe_code)]
