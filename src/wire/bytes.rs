//! Bounds-checked cursor helpers shared by every codec of the wire layer: take `n` bytes,
//! check room in an output buffer, check that a layout used every byte.
//!
//! What it owns: the four checks every parser and emitter repeats. What it never does:
//! panic on any input, or know a layout.

use super::WireError;

/// Reads `n` bytes at `*pos`, advancing it.
///
/// # Errors
/// [`WireError::Truncated`] when fewer than `n` bytes remain.
#[inline]
pub(crate) fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], WireError> {
    let end = pos.checked_add(n).ok_or(WireError::Truncated)?;
    let s = buf.get(*pos..end).ok_or(WireError::Truncated)?;
    *pos = end;
    Ok(s)
}

/// Reads one byte at `*pos`, advancing it.
///
/// # Errors
/// [`WireError::Truncated`] at the end of `buf`.
#[inline]
pub(crate) fn take_u8(buf: &[u8], pos: &mut usize) -> Result<u8, WireError> {
    Ok(take(buf, pos, 1)?[0])
}

/// `Ok` when an output buffer holds at least `n` bytes.
///
/// # Errors
/// [`WireError::BufferTooSmall`].
#[inline]
pub(crate) fn room(buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::BufferTooSmall)
    } else {
        Ok(())
    }
}

/// `Ok` when `pos` is the end of `buf`.
///
/// # Errors
/// [`WireError::TrailingData`] when bytes remain after the last field.
#[inline]
pub(crate) fn done(buf: &[u8], pos: usize) -> Result<(), WireError> {
    if pos == buf.len() {
        Ok(())
    } else {
        Err(WireError::TrailingData)
    }
}

/// `Ok` when `buf` is exactly `n` bytes long.
///
/// # Errors
/// [`WireError::Truncated`] when shorter, [`WireError::TrailingData`] when longer.
#[inline]
pub(crate) fn exact(buf: &[u8], n: usize) -> Result<(), WireError> {
    match buf.len().cmp(&n) {
        core::cmp::Ordering::Less => Err(WireError::Truncated),
        core::cmp::Ordering::Equal => Ok(()),
        core::cmp::Ordering::Greater => Err(WireError::TrailingData),
    }
}

/// Appends what `emit` writes into `n` fresh bytes at the end of `out`; returns the length
/// written. On error `out` is left as it was.
///
/// # Errors
/// The error of `emit`.
#[inline]
pub(crate) fn append(
    out: &mut Vec<u8>,
    n: usize,
    emit: impl FnOnce(&mut [u8]) -> Result<usize, WireError>,
) -> Result<usize, WireError> {
    let start = out.len();
    out.resize(start + n, 0);
    match emit(&mut out[start..]) {
        Ok(w) => {
            out.truncate(start + w);
            Ok(w)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Reads `[len u8][len bytes of UTF-8]` at `*pos`, advancing it past the text.
///
/// # Errors
/// [`WireError::Truncated`]; [`WireError::BadUtf8`].
#[inline]
pub(crate) fn take_short_text<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a str, WireError> {
    let len = usize::from(take_u8(buf, pos)?);
    core::str::from_utf8(take(buf, pos, len)?).map_err(|_| WireError::BadUtf8)
}
