//! A link option for the bot's release build (issue 17, idle memory of a node).
//!
//! An idle bot's RSS is mostly its own executable: the kernel maps 64 KiB around every page
//! fault, so almost all of `.text` that lies near code that ran is resident, and the dynamic
//! loader reads every entry of `.rela.dyn` at start, which then stays resident too
//! (docs/ARCHITECTURE.md, "Idle memory of a node"). One linker option removes most of the
//! latter without changing what the code does:
//!
//! - `-z pack-relative-relocs` stores the ~23,000 relative relocations as a RELR bitmap
//!   (a few KiB) instead of 24-byte RELA entries (539 KiB, all read at start). The loader
//!   applies the same relocations; glibc 2.36 or newer is needed to run the binary (the
//!   linker records the `GLIBC_ABI_DT_RELR` version, so an older glibc refuses it at start
//!   with a message instead of misbehaving).
//!
//! (`--icf=all`, folding identical functions, was tried as well: `.text` 10.9 -> 10.6 MB, but
//! the resident part of it stayed 8.9 MiB, so it is not used.)
//!
//! Only where the linker is known to be LLD: rustc links x86_64-unknown-linux-gnu with its
//! own `rust-lld` from Rust 1.90 on, unless a linker is chosen explicitly (then nothing is
//! added: another linker may not know the option). Debug builds (the multi-process tests)
//! are left as they are: their memory is not measured.

use std::process::Command;

/// The first rustc minor version (1.x) that links x86_64-unknown-linux-gnu with rust-lld
/// (LLD has had `-z pack-relative-relocs` since version 15).
const LLD_DEFAULT_SINCE_MINOR: u32 = 90;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=HA_BOT_PLAIN_LINK");
    if links_with_rust_lld() && std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo::rustc-link-arg-bin=bot=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this build links with rustc's default rust-lld: the right target, a recent
/// enough rustc, no linker or linker flavour chosen by the user, and no opt-out
/// (`HA_BOT_PLAIN_LINK=1`, for comparing builds).
fn links_with_rust_lld() -> bool {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    if env("TARGET") != "x86_64-unknown-linux-gnu" || !env("HA_BOT_PLAIN_LINK").is_empty() {
        return false;
    }
    // Cargo sets RUSTC_LINKER when a linker is configured for the target.
    if !env("RUSTC_LINKER").is_empty() {
        return false;
    }
    // RUSTFLAGS as cargo passes them, separated by 0x1f.
    let rustflags = env("CARGO_ENCODED_RUSTFLAGS");
    if rustflags.contains("linker") || rustflags.contains("link-self-contained") {
        return false;
    }
    rustc_minor().is_some_and(|minor| minor >= LLD_DEFAULT_SINCE_MINOR)
}

/// The minor version of the rustc that builds this package (`rustc 1.95.0 (...)` gives 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    (major == 1).then_some(minor)
}
