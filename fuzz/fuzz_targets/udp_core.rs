//! Fuzz target `udp_core`: see `fuzz/targets.rs`.
#![no_main]
#![allow(dead_code)]

include!("../targets.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| udp_core(data));
