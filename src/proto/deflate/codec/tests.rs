//! RFC 7692's examples, round trips, context takeover, and the inflate bound.

use super::*;

/// Text that compresses well but not trivially.
fn sample(len: usize) -> Vec<u8> {
    let words = b"permessage-deflate compresses messages one at a time; ";
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(words);
        out.extend_from_slice(i.to_string().as_bytes());
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    out.truncate(len);
    out
}

#[test]
fn rfc_7692_examples_inflate() {
    let mut inflater = Inflater::new(false);
    // §7.2.3.1: "Hello" compressed, tail stripped.
    assert_eq!(
        inflater.inflate(b"\xf2\x48\xcd\xc9\xc9\x07\x00", 100),
        Ok(b"Hello".to_vec())
    );
    // §7.2.3.2: the same again, referring back to the first one (context takeover).
    assert_eq!(
        inflater.inflate(b"\xf2\x00\x11\x00\x00", 100),
        Ok(b"Hello".to_vec())
    );
    // §7.2.3.3: a stored (uncompressed) block.
    let mut fresh = Inflater::new(true);
    assert_eq!(
        fresh.inflate(b"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 100),
        Ok(b"Hello".to_vec())
    );
    // §7.2.3.4: a final block (BFINAL set); the next message starts a new stream.
    assert_eq!(
        fresh.inflate(b"\xf3\x48\xcd\xc9\xc9\x07\x00", 100),
        Ok(b"Hello".to_vec())
    );
    assert_eq!(
        fresh.inflate(b"\xf2\x48\xcd\xc9\xc9\x07\x00", 100),
        Ok(b"Hello".to_vec())
    );
    // §7.2.3.6: an empty message is one `00` byte.
    assert_eq!(fresh.inflate(b"\x00", 100), Ok(Vec::new()));
}

#[test]
fn compress_matches_rfc_example() {
    let mut deflater = Deflater::new(15, 6, false);
    let mut out = Vec::new();
    assert!(deflater.compress(b"Hello Hello Hello Hello", &mut out));
    assert!(!out.ends_with(&TAIL));
    assert_eq!(
        Inflater::new(true).inflate(&out, 100),
        Ok(b"Hello Hello Hello Hello".to_vec())
    );
}

#[test]
fn round_trips_with_and_without_takeover() {
    for no_context_takeover in [false, true] {
        for bits in [9, 12, 15] {
            let mut deflater = Deflater::new(bits, 1, no_context_takeover);
            let mut inflater = Inflater::new(no_context_takeover);
            let mut sizes = Vec::new();
            for len in [100, 1000, 5000, 70_000, 300_000, 5000] {
                let payload = sample(len);
                let mut out = Vec::new();
                assert!(deflater.compress(&payload, &mut out), "{len}");
                sizes.push(out.len());
                assert_eq!(inflater.inflate(&out, len), Ok(payload), "{len} {bits}");
            }
            // With takeover the repeated 5000-byte message refers back to the first one.
            let (first, last) = (sizes[2], sizes[5]);
            assert_eq!(no_context_takeover, first == last, "{sizes:?}");
        }
    }
}

#[test]
fn incompressible_and_empty_messages_go_uncompressed() {
    let mut deflater = Deflater::new(15, 1, false);
    let mut out = vec![1, 2, 3];
    let mut noise = vec![0u8; 4096];
    let mut x = 0x1234_5678u32;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    assert!(!deflater.compress(&noise, &mut out));
    assert!(!deflater.compress(b"", &mut out));
    assert_eq!(out, [1, 2, 3]);
    // The reset compressor still produces what a takeover inflater reads.
    let mut inflater = Inflater::new(false);
    for _ in 0..3 {
        let mut out = Vec::new();
        assert!(deflater.compress(&sample(2000), &mut out));
        assert_eq!(inflater.inflate(&out, 2000), Ok(sample(2000)));
    }
}

#[test]
fn limit_is_exact() {
    let payload = vec![b'a'; 10_000];
    let mut compressed = Vec::new();
    assert!(Deflater::new(15, 6, true).compress(&payload, &mut compressed));
    assert_eq!(
        Inflater::new(true).inflate(&compressed, 10_000),
        Ok(payload)
    );
    for limit in [9_999, 9_998, 0] {
        assert_eq!(
            Inflater::new(true).inflate(&compressed, limit),
            Err(ProtocolError::MessageTooBig {
                size: limit as u64 + 1,
                limit
            })
        );
    }
}

#[test]
fn bomb_stops_at_the_limit() {
    // 64 MiB of zeros in about 64 KiB: inflating stops at 1 MiB + 1 byte.
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new_with_window_bits(Compression::best(), false, 15);
    let mut bomb = Vec::with_capacity(128 << 10);
    for _ in 0..64 {
        c.compress_vec(&zeros, &mut bomb, FlushCompress::None)
            .unwrap();
    }
    c.compress_vec(&[], &mut bomb, FlushCompress::Sync).unwrap();
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    let limit = 1 << 20;
    assert_eq!(
        Inflater::new(false).inflate(&bomb, limit),
        Err(ProtocolError::MessageTooBig {
            size: limit as u64 + 1,
            limit
        })
    );
}

#[test]
fn corrupt_data_is_1007() {
    for bad in [
        &b"\xff\xff\xff\xff"[..],
        // A stored block whose length check fails.
        b"\x00\x05\x00\x00\x00Hello",
        // A final block followed by more bytes.
        b"\xf3\x48\xcd\xc9\xc9\x07\x00\x01\x02",
    ] {
        assert_eq!(
            Inflater::new(false).inflate(bad, 1000),
            Err(ProtocolError::InvalidCompressedData),
            "{bad:?}"
        );
    }
}

#[test]
fn random_input_never_panics_or_overgrows() {
    let mut rng = fastrand::Rng::with_seed(1951);
    for _ in 0..2000 {
        let mut data = vec![0u8; rng.usize(0..200)];
        rng.fill(&mut data);
        // Bias some inputs towards valid block headers.
        if let Some(first) = data.first_mut() {
            *first &= if rng.bool() { 0xfe } else { 0xff };
        }
        let limit = rng.usize(0..5000);
        if let Ok(out) = Inflater::new(rng.bool()).inflate(&data, limit) {
            assert!(out.len() <= limit);
        }
    }
}
