//! The fuzz targets (`fuzz/targets.rs`) on stable: each runs over its seeds (the wire
//! fixtures, the certificates of fresh identities) and over seeded random mutations of
//! them, so that a machine without a nightly toolchain still runs every target. The
//! coverage-guided campaign is `cargo +nightly fuzz run TARGET` (docs/SECURITY.md).
//!
//! `RDV_FUZZ_MUTATIONS` sets the mutations per seed (default 200).

#![allow(dead_code)]

include!("../../fuzz/targets.rs");

use rendezvous::identity::{Identity, KeyAlgorithm};
use rendezvous::sim::Rng;
use rendezvous::wire::fixtures;

/// The seeds of every target: the wire fixtures' bytes and the DER certificates of one
/// identity per key algorithm (written into a directory for cargo-fuzz when
/// `RDV_FUZZ_SEEDS` names one; `fuzz/run.sh` does).
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = fixtures::all().map(fixtures::Fixture::bytes).collect();
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let id = Identity::generate(alg, "fuzz seed").expect("identity");
        out.push(id.cert_der().to_vec());
    }
    out
}

/// One mutation of `seed`: flip, set, insert or delete a few bytes, or cut it.
fn mutate(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=r.next_u64() % 4 {
        let at = if v.is_empty() {
            0
        } else {
            (r.next_u64() as usize) % v.len()
        };
        match r.next_u64() % 5 {
            0 if !v.is_empty() => v[at] ^= 1 << (r.next_u64() % 8),
            1 if !v.is_empty() => v[at] = [0, 0xff, 0x7f, 0x80, 1][(r.next_u64() % 5) as usize],
            2 => v.insert(at, r.next_u64() as u8),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            _ => v.truncate(at),
        }
    }
    v
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_their_mutations() {
    let per_seed: usize = std::env::var("RDV_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seeds = seeds();
    if let Ok(dir) = std::env::var("RDV_FUZZ_SEEDS") {
        std::fs::create_dir_all(&dir).expect("seed directory");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(format!("{dir}/seed-{i:03}"), seed).expect("seed file");
        }
    }
    let mut inputs = 0;
    for (name, target) in TARGETS {
        let mut r = Rng::new(1); // the same mutations on every run
        for seed in &seeds {
            target(seed);
            for _ in 0..per_seed {
                target(&mutate(seed, &mut r));
                inputs += 1;
            }
        }
        println!(
            "fuzz smoke: {name}: {} seeds, {per_seed} mutations each",
            seeds.len()
        );
    }
    println!("fuzz smoke: {inputs} inputs, no panic");
}
