//! GGML block formats to float32, by the rules of ggml's `dequantize_row_*`
//! (`ggml-quants.c`), with the float operations in the same order so that the
//! results are bit-identical to ggml's and to gguf-py's numpy dequantizers
//! (checked by `convert/tests/gguf_dequant.rs` against gguf-py).

use half::{bf16, f16};

use super::types::{GgmlType, QK_K};
use crate::ConvertError;

/// Dequantizes `bytes`, a whole number of `ty` blocks, to float32 appended to
/// `out`. An undequantizable type is [`ConvertError::Unsupported`] naming it;
/// a byte count that is not a whole number of blocks is
/// [`ConvertError::Tensor`] (`name` says which tensor).
pub fn dequantize(
    ty: GgmlType,
    bytes: &[u8],
    name: &str,
    out: &mut Vec<f32>,
) -> Result<(), ConvertError> {
    if !ty.can_dequantize() {
        return Err(ConvertError::Unsupported {
            what: format!("GGUF tensor type {ty} (tensor `{name}`)"),
            message: "supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K".into(),
        });
    }
    let (block, block_bytes) = ty.block_layout();
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(ConvertError::Tensor {
            name: name.to_string(),
            message: format!(
                "{} bytes is not a whole number of {ty} blocks of {block_bytes} bytes",
                bytes.len()
            ),
        });
    }
    out.reserve(bytes.len() / block_bytes * block);
    for b in bytes.chunks_exact(block_bytes) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(half16(b, 0)),
            GgmlType::BF16 => out.push(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
            GgmlType::Q4_0 => q4_0(b, out),
            GgmlType::Q4_1 => q4_1(b, out),
            GgmlType::Q5_0 => q5_0(b, out),
            GgmlType::Q5_1 => q5_1(b, out),
            GgmlType::Q8_0 => q8_0(b, out),
            GgmlType::Q2_K => q2_k(b, out),
            GgmlType::Q3_K => q3_k(b, out),
            GgmlType::Q4_K => q4_k(b, out),
            GgmlType::Q5_K => q5_k(b, out),
            GgmlType::Q6_K => q6_k(b, out),
            GgmlType::Q8_K => q8_k(b, out),
            _ => unreachable!("can_dequantize() lists exactly the types handled here"),
        }
    }
    Ok(())
}

/// The little-endian f16 at `b[at..at + 2]`, widened (exactly).
fn half16(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// `{ d: f16, qs: [u8; 16] }`: `(nibble − 8) · d`, low nibbles first.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| ((q & 0xF) as i32 - 8) as f32 * d));
    out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
}

/// `{ d: f16, m: f16, qs: [u8; 16] }`: `nibble · d + m`.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half16(b, 0), half16(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| (q & 0xF) as f32 * d + m));
    out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
}

/// The 5-bit values of a Q5 block: low nibbles from `qs`, fifth bits from the
/// 32-bit little-endian `qh` (bit `j` for element `j`).
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
        v[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    v
}

/// `{ d: f16, qh: u32, qs: [u8; 16] }`: `(q5 − 16) · d`.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    out.extend(q5_values(&b[2..6], &b[6..22]).iter().map(|&q| (q as i32 - 16) as f32 * d));
}

/// `{ d: f16, m: f16, qh: u32, qs: [u8; 16] }`: `q5 · d + m`.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half16(b, 0), half16(b, 2));
    out.extend(q5_values(&b[4..8], &b[8..24]).iter().map(|&q| q as f32 * d + m));
}

/// `{ d: f16, qs: [i8; 32] }`: `q · d`.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

/// `{ scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16 }`: 16 sub-blocks of
/// 16; sub-block scale `d · (sc & 15)`, min `dmin · (sc >> 4)`, 2-bit codes.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let scales = &b[0..16];
    let d = half16(b, 80);
    let min = half16(b, 82);
    let mut is = 0;
    for n in 0..QK_K / 128 {
        let q = &b[16 + 32 * n..16 + 32 * (n + 1)];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0xF) as f32;
                let ml = min * (sc >> 4) as f32;
                out.extend(
                    q[16 * half..16 * half + 16]
                        .iter()
                        .map(|&q| dl * ((q >> shift) & 3) as f32 - ml),
                );
            }
        }
    }
}

/// `{ hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16 }`: 16
/// sub-blocks of 16 with 6-bit signed scales (− 32); 3-bit codes whose third
/// bit, when clear, subtracts 4.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let hmask = &b[0..32];
    let packed = &b[96..108];
    let d_all = half16(b, 108);
    // Scale i: low 4 bits from byte i % 8 (nibble i / 8), high 2 bits from
    // byte 8 + i % 4 (bits 2·(i / 4)).
    let mut scales = [0i32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = (packed[i % 8] >> (4 * (i / 8))) & 0xF;
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..QK_K / 128 {
        let q = &b[32 + 32 * n..32 + 32 * (n + 1)];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                let range = 16 * half..16 * half + 16;
                out.extend(q[range.clone()].iter().zip(&hmask[range]).map(|(&q, &h)| {
                    let v = ((q >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                    dl * v as f32
                }));
            }
            m <<= 1;
        }
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a
/// Q4_K/Q5_K block's 12 packed bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The scale and offset of sub-blocks `2n` and `2n + 1` of a Q4_K/Q5_K block
/// (`d · sc`, `dmin · m`), the two halves of its n-th 32-byte chunk.
fn sub_block_pair(d: f32, min: f32, scales: &[u8], n: usize) -> [(f32, f32); 2] {
    [2 * n, 2 * n + 1].map(|j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc as f32, min * m as f32)
    })
}

/// `{ d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }`: 8 sub-blocks of
/// 32, `d · sc · nibble − dmin · m`.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half16(b, 0), half16(b, 2));
    let scales = &b[4..16];
    for (n, q) in b[16..144].chunks_exact(32).enumerate() {
        let [(d1, m1), (d2, m2)] = sub_block_pair(d, min, scales, n);
        out.extend(q.iter().map(|&q| d1 * (q & 0xF) as f32 - m1));
        out.extend(q.iter().map(|&q| d2 * (q >> 4) as f32 - m2));
    }
}

/// `{ d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }`:
/// Q4_K with a fifth bit per element from `qh` (bit 2n, 2n + 1 for the two
/// halves of the n-th 32-byte chunk).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half16(b, 0), half16(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    for (n, ql) in b[48..176].chunks_exact(32).enumerate() {
        let [(d1, m1), (d2, m2)] = sub_block_pair(d, min, scales, n);
        let (u1, u2) = (1u8 << (2 * n), 2u8 << (2 * n));
        out.extend(
            ql.iter()
                .zip(qh)
                .map(|(&q, &h)| d1 * ((q & 0xF) + if h & u1 != 0 { 16 } else { 0 }) as f32 - m1),
        );
        out.extend(
            ql.iter()
                .zip(qh)
                .map(|(&q, &h)| d2 * ((q >> 4) + if h & u2 != 0 { 16 } else { 0 }) as f32 - m2),
        );
    }
}

/// `{ ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }`: 16
/// sub-blocks of 16, `d · scale · (q6 − 32)`.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 208);
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let y = &mut out[start..];
    for n in 0..QK_K / 128 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

/// `{ d: f32, qs: [i8; 256], bsums: [i16; 16] }`: `d · q` (the block sums are
/// a matmul aid and do not enter the values).
fn q8_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    out.extend(b[4..4 + QK_K].iter().map(|&q| d * q as i8 as f32));
}
