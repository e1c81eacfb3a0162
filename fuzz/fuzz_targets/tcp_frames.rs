//! Fuzz target `tcp_frames`: see `fuzz/targets.rs`.
#![no_main]
#![allow(dead_code)]

include!("../targets.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| tcp_frames(data));
