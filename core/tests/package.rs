//! Package format: round trips, authenticity, and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::delta::Params;
use bluesphere_core::keys;
use bluesphere_core::package::build::{build_package, put_varint, ComponentSpec, PackageSpec};
use bluesphere_core::package::{Header, Manifest, Package, PackageError, HEADER_LEN};
use bluesphere_core::testkit::{evolve, firmware};
use bluesphere_core::unpack::{self, Checks};
use p256::ecdsa::SigningKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed.max(1); 32]).unwrap()
}

fn component(name: &str, old: Option<Vec<u8>>, new: Vec<u8>) -> ComponentSpec {
    ComponentSpec {
        name: name.into(),
        from_version: old.as_ref().map(|_| "1.0.0".into()),
        to_version: "1.1.0".into(),
        security_counter: 7,
        load_address: 0x0800_0000,
        old,
        new,
        params: Params::BEST,
        dependencies: vec![("bootloader".into(), "2.0.0".into())],
    }
}

fn spec(components: Vec<ComponentSpec>) -> PackageSpec {
    PackageSpec {
        product_id: "thermo".into(),
        hardware_id: "revB".into(),
        created: 1_700_000_000,
        components,
    }
}

fn small_package() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let old = firmware(1, 3000);
    let new = evolve(&old, 1);
    let pkg = build_package(
        &spec(vec![component("main", Some(old.clone()), new.clone())]),
        &key(1),
        &mut |_| {},
    )
    .unwrap();
    (pkg, old, new)
}

#[test]
fn roundtrip_and_fields() {
    let (pkg, old, new) = small_package();
    let p = Package::parse(&pkg).unwrap();
    p.verify(&[*key(1).verifying_key()]).unwrap();
    assert_eq!(p.manifest.product_id, "thermo");
    assert_eq!(p.manifest.hardware_id, "revB");
    assert_eq!(p.manifest.created, 1_700_000_000);
    let c = p.manifest.component("main").unwrap();
    assert_eq!((c.from_version, c.to_version), ("1.0.0", "1.1.0"));
    assert_eq!(c.security_counter, 7);
    assert_eq!(c.load_address, 0x0800_0000);
    assert_eq!(c.source_size, old.len() as u64);
    assert_eq!(c.target_size, new.len() as u64);
    let deps: Vec<_> = c.dependencies().collect();
    assert_eq!(deps.len(), 1);
    assert_eq!(
        (deps[0].component, deps[0].min_version),
        ("bootloader", "2.0.0")
    );
    let out = unpack::apply_component(&p, &c, Some(&old), &mut |_| {}).unwrap();
    assert_eq!(out, new);
    // Header round trip.
    let h = Header::parse(&pkg).unwrap();
    assert_eq!(&h.to_bytes()[..], &pkg[..HEADER_LEN]);
}

#[test]
fn several_components_in_one_package() {
    let main_old = firmware(2, 20_000);
    let main_new = evolve(&main_old, 2);
    let modem_new = firmware(3, 7000);
    let pkg = build_package(
        &spec(vec![
            component("main", Some(main_old.clone()), main_new.clone()),
            component("modem", None, modem_new.clone()),
        ]),
        &key(2),
        &mut |_| {},
    )
    .unwrap();
    let p = unpack::check(
        &pkg,
        &Checks {
            keys: Some(&[*key(2).verifying_key()]),
            hardware_id: Some("revB"),
            product_id: Some("thermo"),
        },
    )
    .unwrap();
    assert_eq!(p.manifest.component_count, 2);
    let e = unpack::select(&p, None).unwrap_err();
    assert_eq!(e.kind(), "no-component");
    let m = unpack::select(&p, Some("main")).unwrap();
    let d = unpack::select(&p, Some("modem")).unwrap();
    assert_eq!(
        unpack::apply_component(&p, &m, Some(&main_old), &mut |_| {}).unwrap(),
        main_new
    );
    assert_eq!(
        unpack::apply_component(&p, &d, None, &mut |_| {}).unwrap(),
        modem_new
    );
    assert_eq!(
        unpack::select(&p, Some("gps")).unwrap_err().kind(),
        "no-component"
    );
}

#[test]
fn every_byte_flip_in_the_signed_region_is_caught() {
    let (pkg, _, _) = small_package();
    let keys = [*key(1).verifying_key()];
    let signed = Package::parse(&pkg).unwrap().header.payload_offset() as usize;
    for i in 0..signed {
        for bit in [0x01u8, 0x80] {
            let mut bad = pkg.clone();
            bad[i] ^= bit;
            let r = Package::parse(&bad).and_then(|p| p.verify(&keys).map(|_| ()));
            assert!(r.is_err(), "flip of bit {bit:#x} at byte {i} was accepted");
        }
    }
}

#[test]
fn payload_flips_are_caught() {
    let (pkg, _, _) = small_package();
    let keys = [*key(1).verifying_key()];
    let start = Package::parse(&pkg).unwrap().header.payload_offset() as usize;
    for i in start..pkg.len() {
        let mut bad = pkg.clone();
        bad[i] ^= 0x10;
        let e = Package::parse(&bad).unwrap().verify(&keys).unwrap_err();
        assert_eq!(e, PackageError::PayloadHash { component: 0 });
    }
}

#[test]
fn every_truncation_is_caught() {
    let (pkg, _, _) = small_package();
    for n in 0..pkg.len() {
        assert!(
            Package::parse(&pkg[..n]).is_err(),
            "truncated to {n} accepted"
        );
    }
    let mut long = pkg.clone();
    long.push(0);
    assert_eq!(
        Package::parse(&long).unwrap_err(),
        PackageError::TrailingBytes(1)
    );
}

#[test]
fn wrong_key_and_unknown_key() {
    let (pkg, _, _) = small_package();
    let p = Package::parse(&pkg).unwrap();
    let e = p.verify(&[*key(9).verifying_key()]).unwrap_err();
    assert!(matches!(e, PackageError::UnknownKey { .. }));
    assert!(e.to_string().contains(&hex::encode(p.header.key_id)), "{e}");
    // Any of several keys works.
    p.verify(&[*key(9).verifying_key(), *key(1).verifying_key()])
        .unwrap();
}

#[test]
fn forged_signature_with_matching_key_id_is_refused() {
    let (pkg, _, _) = small_package();
    let p = Package::parse(&pkg).unwrap();
    let mut bad = pkg.clone();
    let s = p.header.signature_offset() as usize;
    bad[s..s + 64].copy_from_slice(&[0x42; 64]);
    let e = Package::parse(&bad)
        .unwrap()
        .verify(&[*key(1).verifying_key()])
        .unwrap_err();
    assert_eq!(e, PackageError::BadSignature);
}

fn with_header(pkg: &[u8], f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut b = pkg.to_vec();
    f(&mut b[..HEADER_LEN]);
    b
}

#[test]
fn hostile_header_fields() {
    let (pkg, _, _) = small_package();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("magic", with_header(&pkg, |h| h[0] = b'X')),
        ("version 1", with_header(&pkg, |h| h[4] = 1)),
        ("version 9", with_header(&pkg, |h| h[4] = 9)),
        ("components 0", with_header(&pkg, |h| h[5] = 0)),
        ("components 2", with_header(&pkg, |h| h[5] = 2)),
        ("components 200", with_header(&pkg, |h| h[5] = 200)),
        (
            "manifest 64 KiB",
            with_header(&pkg, |h| h[6..8].copy_from_slice(&u16::MAX.to_le_bytes())),
        ),
        (
            "manifest 0",
            with_header(&pkg, |h| h[6..8].copy_from_slice(&0u16.to_le_bytes())),
        ),
        (
            "manifest -1",
            with_header(&pkg, |h| {
                let v = u16::from_le_bytes(h[6..8].try_into().unwrap()) - 1;
                h[6..8].copy_from_slice(&v.to_le_bytes())
            }),
        ),
        (
            "payload 4 GiB",
            with_header(&pkg, |h| h[12..16].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        (
            "payload +1",
            with_header(&pkg, |h| {
                let v = u32::from_le_bytes(h[12..16].try_into().unwrap()) + 1;
                h[12..16].copy_from_slice(&v.to_le_bytes())
            }),
        ),
        (
            "payload -1",
            with_header(&pkg, |h| {
                let v = u32::from_le_bytes(h[12..16].try_into().unwrap()) - 1;
                h[12..16].copy_from_slice(&v.to_le_bytes())
            }),
        ),
    ];
    for (what, bad) in cases {
        let e = Package::parse(&bad);
        assert!(e.is_err(), "{what} accepted");
        let msg = e.unwrap_err().to_string();
        assert!(!msg.is_empty(), "{what}");
    }
}

#[test]
fn wrong_base_says_what_is_expected() {
    let (pkg, old, _) = small_package();
    let p = Package::parse(&pkg).unwrap();
    let c = unpack::select(&p, None).unwrap();
    let mut other = old.clone();
    other[10] ^= 1;
    let e = unpack::apply_component(&p, &c, Some(&other), &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), "wrong-base");
    let m = e.to_string();
    assert!(
        m.contains("1.0.0") && m.contains(&hex::encode(c.source_hash)),
        "{m}"
    );
    let e = unpack::apply_component(&p, &c, None, &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), "need-base");
}

#[test]
fn other_hardware_and_product_are_refused() {
    let (pkg, _, _) = small_package();
    let e = unpack::check(
        &pkg,
        &Checks {
            hardware_id: Some("revC"),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), "wrong-hardware");
    assert!(e.to_string().contains("revB"));
    let e = unpack::check(
        &pkg,
        &Checks {
            product_id: Some("kettle"),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), "wrong-product");
}

#[test]
fn builder_refuses_bad_fields() {
    let new = firmware(4, 1000);
    let mut c = component("main", None, new.clone());
    c.to_version = "1.2".into();
    assert!(build_package(&spec(vec![c]), &key(1), &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("semantic version"));
    let mut c = component("main", None, new.clone());
    c.name = "x".repeat(40);
    assert!(build_package(&spec(vec![c]), &key(1), &mut |_| {}).is_err());
    let c = component("main", None, new.clone());
    assert!(
        build_package(&spec(vec![c.clone(), c]), &key(1), &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(build_package(&spec(vec![]), &key(1), &mut |_| {}).is_err());
}

#[test]
fn keys_roundtrip_plain_and_encrypted() {
    let k = keys::generate();
    let pem = keys::private_pem(&k, None).unwrap();
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    assert_eq!(keys::load_private(&pem, None).unwrap(), k);
    let enc = keys::private_pem(&k, Some("hunter2")).unwrap();
    assert!(enc.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    assert!(matches!(
        keys::load_private(&enc, None),
        Err(keys::KeyError::NeedPassphrase)
    ));
    assert!(matches!(
        keys::load_private(&enc, Some("nope")),
        Err(keys::KeyError::WrongPassphrase)
    ));
    assert_eq!(keys::load_private(&enc, Some("hunter2")).unwrap(), k);
    let pubpem = keys::public_pem(k.verifying_key()).unwrap();
    assert_eq!(
        keys::load_public(&pubpem, None).unwrap(),
        *k.verifying_key()
    );
    assert!(keys::load_private(&pubpem, None)
        .unwrap_err()
        .to_string()
        .contains("public key"));
    assert!(keys::load_private("garbage", None).is_err());
}

#[test]
fn manifest_numbers_are_minimal_bounded_leb128() {
    use bluesphere_core::package::Reader;
    let enc = |v: u64| {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    };
    for v in [
        0u64,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u32::MAX as u64,
        u64::MAX,
    ] {
        let b = enc(v);
        let mut r = Reader::new(&b);
        assert_eq!(r.varint(u64::MAX).unwrap(), v);
        assert!(r.at_end());
    }
    let bad: [(&[u8], u64, &str); 6] = [
        (&[0x80, 0x00], u64::MAX, "not minimally encoded"),
        (&[0xFF, 0x80, 0x00], u64::MAX, "not minimally encoded"),
        (&[0x80; 10], u64::MAX, "too long"),
        (
            &[0xFF, 0xFF, 0xFF, 0xFF, 0x10],
            u32::MAX as u64,
            "out of range",
        ),
        (&[0x80, 0x80], u64::MAX, "ends early"),
        (&[0xFF; 11], u64::MAX, "too large"),
    ];
    for (b, max, why) in bad {
        let e = Reader::new(b).varint(max).unwrap_err().to_string();
        assert!(e.contains(why), "{b:02x?}: {e}");
    }
}

#[test]
fn delta_package_overhead() {
    // Header 16 + signature 64 + the manifest of a one-component delta with short ids.
    let (pkg, _, new) = small_package();
    let p = Package::parse(&pkg).unwrap();
    let c = unpack::select(&p, None).unwrap();
    let overhead = pkg.len() as u64 - c.payload_size;
    let m = p.header.manifest_len as u64;
    assert_eq!(overhead, 16 + 64 + m);
    // product, hardware, name, versions as given, plus at most 87 bytes of fields:
    // 8-byte source hash, 32-byte target hash, CRC-32, time, sizes, address, counter as
    // varints, flags with the dependency count.
    let strings = (p.manifest.product_id.len() + p.manifest.hardware_id.len() + 2)
        + (c.name.len() + c.from_version.len() + c.to_version.len() + 3);
    assert!(
        m <= strings as u64 + 87,
        "manifest {m} bytes ({strings} of strings)"
    );
    assert_eq!(c.target_size, new.len() as u64);
}

/// The component flags byte: kind, codec and the dependency count; a count over 8 and the
/// reserved bit are refused by name.
#[test]
fn component_flags_are_checked() {
    let (pkg, _, _) = small_package();
    let h = Header::parse(&pkg).unwrap();
    let m = pkg[HEADER_LEN..HEADER_LEN + h.manifest_len as usize].to_vec();
    // product "thermo", hardware "revB", created (5), name "main", "1.0.0", "1.1.0",
    // counter 7 (1), load address 0x0800_0000 (4): then the flags.
    let at = 7 + 5 + 5 + 5 + 6 + 6 + 1 + 4;
    assert_eq!(
        m[at],
        1 | (1 << 1) | (1 << 3),
        "delta, BSD3, one dependency"
    );
    for (flags, why) in [
        (1 | (1 << 1) | (9 << 3), "too many dependencies"),
        (1 | (1 << 1) | (1 << 3) | 0x80, "reserved component flags"),
        (1 | (3 << 1) | (1 << 3), "unknown codec"),
        (1 | (1 << 3), "BSD3 codec"),
    ] {
        let mut bad = m.clone();
        bad[at] = flags;
        let e = Manifest::parse(&bad, &h).unwrap_err().to_string();
        assert!(e.contains(why), "{flags:#04x}: {e}");
    }
}

/// `docs/FORMAT.md`: names are unique in a package and every image has at least one byte; the
/// parser (the host's and the device's admission both use it) refuses either, signed or not.
#[test]
fn duplicate_names_and_empty_images_are_refused_by_the_parser() {
    use sha2::Digest;
    let a = firmware(2, 40);
    let pkg = build_package(
        &spec(vec![
            component("aa", None, a.clone()),
            component("ab", None, a.clone()),
        ]),
        &key(1),
        &mut |_| {},
    )
    .unwrap();
    let h = Header::parse(&pkg).unwrap();
    let m = pkg[HEADER_LEN..HEADER_LEN + h.manifest_len as usize].to_vec();
    let at = m.windows(3).position(|w| w == b"\x02ab").unwrap();
    let mut dup = m.clone();
    dup[at + 2] = b'a';
    let e = Manifest::parse(&dup, &h).unwrap_err().to_string();
    assert!(e.contains("same name"), "{e}");
    let mut whole = pkg.clone();
    whole[HEADER_LEN..HEADER_LEN + m.len()].copy_from_slice(&dup);
    assert!(Package::parse(&whole).is_err());

    // Target size 0: the byte before the image's SHA-256 is its (one-byte) size.
    let digest = sha2::Sha256::digest(&a);
    let at = m.windows(32).position(|w| w == &digest[..]).unwrap();
    assert_eq!(usize::from(m[at - 1]), a.len());
    let mut empty = m.clone();
    empty[at - 1] = 0;
    let e = Manifest::parse(&empty, &h).unwrap_err().to_string();
    assert!(e.contains("empty image"), "{e}");

    let e = build_package(
        &spec(vec![component("main", None, vec![])]),
        &key(1),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty"), "{e}");
}
