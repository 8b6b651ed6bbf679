//! Encode every pair of a corpus list (`family<TAB>old<TAB>new`), decode it again in odd-sized
//! chunks, check the bytes, and print ratios. `cargo run --release -p bluesphere-core
//! --example delta_corpus -- LIST [best|small]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point
use bluesphere_core::delta::{DeltaDecoder, Params, SliceIo};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let list = args.next().ok_or("usage: delta_corpus LIST [best|small]")?;
    let params = match args.next().as_deref() {
        Some("small") => Params::SMALL,
        _ => Params::BEST,
    };
    let params = match std::env::var("BS_LCLP") {
        Ok(v) => {
            let b = v.as_bytes();
            Params {
                lc: b[0] - b'0',
                lp: b[1] - b'0',
                ..params
            }
        }
        Err(_) => params,
    };
    let params = match std::env::var("BS_WIN") {
        Ok(v) => Params {
            window_log2: v.parse()?,
            ..params
        },
        Err(_) => params,
    };
    let params = match std::env::var("BS_BLOCK") {
        Ok(v) => Params {
            block_log2: v.parse()?,
            ..params
        },
        Err(_) => params,
    };
    let mut ratios = Vec::new();
    let mut cost = [0.0f64; 4];
    let (mut tot_p, mut tot_n) = (0u64, 0u64);
    // CRC-32 over all patches in list order: equal digests mean the same bytes out.
    let mut digest = Vec::new();
    for line in std::fs::read_to_string(list)?.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (old, new) = (std::fs::read(f[1])?, std::fs::read(f[2])?);
        let t = Instant::now();
        let segs = bluesphere_core::diff::find_segments(&old, &new)?;
        let match_s = t.elapsed().as_secs_f64();
        if std::env::var_os("BS_SEGS").is_some() {
            let mut pos = 0u64;
            for sg in &segs {
                match *sg {
                    bluesphere_core::delta::Segment::Add { len, old: o } => {
                        let nd = (0..len as usize)
                            .filter(|&i| old[o as usize + i] != new[pos as usize + i])
                            .count();
                        println!(
                            "  add {pos:6} len {len:5} from {o:6} (shift {:+}) nonzero {nd}",
                            o as i64 - pos as i64
                        );
                        pos += len;
                    }
                    bluesphere_core::delta::Segment::Lit { len } => {
                        println!("  lit {pos:6} len {len:5}");
                        pos += len;
                    }
                }
            }
        }
        // BS_MAKE: the production path (`make_delta`: streamed coding for one-block
        // targets); its bytes must equal the two-step path's (same digest).
        let (patch, st) = if std::env::var_os("BS_MAKE").is_some() {
            let t = Instant::now();
            let p = bluesphere_core::diff::make_delta(&old, &new, params)?;
            eprintln!("  make_delta {:.3}s", t.elapsed().as_secs_f64());
            (p, [0.0; 4])
        } else {
            bluesphere_core::delta::encode_with_stats(&old, &new, &segs, params)?
        };
        for (a, b) in cost.iter_mut().zip(st) {
            *a += b / 8.0;
        }
        if std::env::var_os("BS_VERBOSE").is_some() {
            println!(
                "  ctl {:.0} dflag {:.0} dval {:.0} lit {:.0}",
                st[0] / 8.0,
                st[1] / 8.0,
                st[2] / 8.0,
                st[3] / 8.0
            );
        }
        let ct = t.elapsed();
        let mut out = vec![0u8; new.len()];
        let t = Instant::now();
        if std::env::var_os("BS_NODECODE").is_none() {
            let mut io = SliceIo::new(&old, &mut out);
            let mut d: DeltaDecoder<16, 65536> = DeltaDecoder::new(old.len() as u64);
            for c in patch.chunks(1021) {
                d.push_all(c, &mut io).map_err(|e| format!("{e}"))?;
            }
            d.finish()?;
        }
        let at = t.elapsed();
        if out != new && std::env::var_os("BS_NODECODE").is_none() {
            return Err(format!("mismatch on {}", f[2]).into());
        }
        let r = patch.len() as f64 / new.len() as f64;
        println!(
            "{:<28} {:>9} {:>8} {:>7.2}% create {:>6.3}s (match {:.3}s) apply {:>6.3}s",
            f[0],
            new.len(),
            patch.len(),
            r * 100.0,
            ct.as_secs_f64(),
            match_s,
            at.as_secs_f64()
        );
        ratios.push(r);
        digest.extend_from_slice(&bluesphere_core::crc::crc32(&patch).to_le_bytes());
        tot_p += patch.len() as u64;
        tot_n += new.len() as u64;
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let n = ratios.len();
    let med = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    println!(
        "bytes: controls {:.0} diff-flags {:.0} diff-values {:.0} literals {:.0}",
        cost[0], cost[1], cost[2], cost[3]
    );
    println!(
        "pairs {n} median {:.2}% total {:.2}% digest {:08x}",
        med * 100.0,
        tot_p as f64 * 100.0 / tot_n as f64,
        bluesphere_core::crc::crc32(&digest)
    );
    Ok(())
}
