//! Admission: the checks a device makes on a package's header and manifest before it erases
//! or writes anything. The answer is plain data (a [`Reject`] code and the component index)
//! so the near-field protocol can send it as is.
//!
//! | order | check | reject |
//! |---|---|---|
//! | 1 | header and manifest parse, lengths consistent | [`Reject::Malformed`] |
//! | 2 | signature by a configured key | [`Reject::UnknownKey`], [`Reject::BadSignature`] |
//! | 3 | product and hardware id | [`Reject::WrongProduct`], [`Reject::WrongHardware`] |
//! | 4 | per component: fits the slot | [`Reject::TooLarge`] |
//! | 5 | per component: security counter not below the installed one | [`Reject::Rollback`] |
//! | 6 | per delta component: installed image is the delta's base (size + SHA-256) | [`Reject::WrongBase`], [`Reject::NotInstalled`] |
//! | 7 | dependencies met by installed components or by this package | [`Reject::MissingDependency`], [`Reject::DependencyTooOld`] |

use bluesphere_core::package::{
    verify_signature_parts, Component, Header, Manifest, PackageError, PayloadKind,
};
use bluesphere_core::version::Version;
use embedded_storage::nor_flash::ReadNorFlash;
use p256::ecdsa::VerifyingKey;
use sha2::Digest;

use crate::Region;

/// Who this device is.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// Product id.
    pub product_id: &'a str,
    /// Hardware id (board revision).
    pub hardware_id: &'a str,
}

/// A component installed on the device.
#[derive(Debug, Clone, Copy)]
pub struct Installed<'a> {
    /// Component name.
    pub name: &'a str,
    /// Installed version.
    pub version: &'a str,
    /// Anti-rollback counter of the installed image.
    pub security_counter: u32,
    /// Installed image size.
    pub image_size: u64,
    /// Installed image SHA-256 (see [`hash_region`]).
    pub image_sha256: [u8; 32],
}

impl Installed<'_> {
    /// No component (a placeholder in fixed-size lists).
    pub const NONE: Installed<'static> = Installed {
        name: "",
        version: "",
        security_counter: 0,
        image_size: 0,
        image_sha256: [0; 32],
    };
}

impl<'a> From<&'a crate::ImageInfo> for Installed<'a> {
    fn from(i: &'a crate::ImageInfo) -> Self {
        Installed {
            name: i.name(),
            version: i.version(),
            security_counter: i.security_counter,
            image_size: u64::from(i.size),
            image_sha256: i.sha256,
        }
    }
}

/// Why a device refuses a package: the protocol's refusal reason (wire codes, one table in
/// `bluesphere_core::proto`).
pub use bluesphere_core::proto::RefuseReason as Reject;

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (code {}", self.reason.text(), self.reason.code())?;
        if self.component > 0 {
            write!(f, ", component {}", self.component)?;
        }
        write!(f, ")")
    }
}

/// A refusal: the reason and the component it concerns (0 for package-level reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reject,
    /// Component index.
    pub component: u8,
}

/// An accepted package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Index of the key that signed it.
    pub key_index: usize,
    /// Number of components.
    pub components: u8,
}

fn reject(reason: Reject, component: u8) -> Rejection {
    Rejection { reason, component }
}

fn from_package(e: PackageError) -> Rejection {
    let reason = match e {
        PackageError::UnknownKey { .. } => Reject::UnknownKey,
        PackageError::BadSignature => Reject::BadSignature,
        _ => Reject::Malformed,
    };
    reject(reason, 0)
}

/// Decide whether to take a package, from its `header` (16 bytes), `manifest` and
/// `signature` alone. `slot_size` bounds every component's image.
pub fn admit(
    header: &[u8],
    manifest: &[u8],
    signature: &[u8],
    keys: &[VerifyingKey],
    id: &Identity<'_>,
    installed: &[Installed<'_>],
    slot_size: u64,
) -> Result<Admitted, Rejection> {
    admit_scoped(
        header,
        manifest,
        signature,
        keys,
        id,
        installed,
        &|_| Some(slot_size),
        Scope::All,
    )
}

/// Which of a package's components a device checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'s> {
    /// Every component and every dependency (a device, or a machine's coordinator).
    All,
    /// Only the component of this name, without its dependencies: a member of a machine,
    /// whose coordinator checked the whole package against the whole machine first. A
    /// package without this component is [`Reject::Unsupported`].
    Only(&'s str),
}

/// [`admit`] with a slot size per component (`None`: this device has no place for a
/// component of that name: [`Reject::Unsupported`]) and a [`Scope`].
#[allow(clippy::too_many_arguments)]
pub fn admit_scoped(
    header: &[u8],
    manifest: &[u8],
    signature: &[u8],
    keys: &[VerifyingKey],
    id: &Identity<'_>,
    installed: &[Installed<'_>],
    slot_size: &dyn Fn(&str) -> Option<u64>,
    scope: Scope<'_>,
) -> Result<Admitted, Rejection> {
    let h = Header::parse(header).map_err(from_package)?;
    if manifest.len() != h.manifest_len as usize
        || header.len() != bluesphere_core::package::HEADER_LEN
    {
        return Err(reject(Reject::Malformed, 0));
    }
    let m = Manifest::parse(manifest, &h).map_err(from_package)?;
    // The signature covers header || manifest: verify without concatenating (no heap).
    let v = verify_signature_parts(&[header, manifest], signature, &h, keys)
        .map_err(from_package)?
        .key_index;
    if m.product_id != id.product_id {
        return Err(reject(Reject::WrongProduct, 0));
    }
    if m.hardware_id != id.hardware_id {
        return Err(reject(Reject::WrongHardware, 0));
    }
    let mut found = false;
    for (i, c) in m.components().enumerate() {
        let i = i as u8;
        let c = c.map_err(from_package)?;
        if let Scope::Only(name) = scope {
            if c.name != name {
                continue;
            }
        }
        found = true;
        let size = slot_size(c.name).ok_or(reject(Reject::Unsupported, i))?;
        check_component(&c, i, installed, size)?;
        if scope == Scope::All {
            for d in c.dependencies() {
                check_dependency(d.component, d.min_version, i, installed, &m)?;
            }
        }
    }
    if !found {
        return Err(reject(Reject::Unsupported, 0));
    }
    Ok(Admitted {
        key_index: v,
        components: m.component_count,
    })
}

fn check_component(
    c: &Component<'_>,
    i: u8,
    installed: &[Installed<'_>],
    slot_size: u64,
) -> Result<(), Rejection> {
    if c.target_size > slot_size {
        return Err(reject(Reject::TooLarge, i));
    }
    let current = installed.iter().find(|x| x.name == c.name);
    if let Some(cur) = current {
        if c.security_counter < cur.security_counter {
            return Err(reject(Reject::Rollback, i));
        }
    }
    if c.kind == PayloadKind::Delta {
        let cur = current.ok_or(reject(Reject::NotInstalled, i))?;
        if cur.image_size != c.source_size || !cur.image_sha256.starts_with(&c.source_hash) {
            return Err(reject(Reject::WrongBase, i));
        }
    }
    Ok(())
}

fn check_dependency(
    name: &str,
    min: &str,
    i: u8,
    installed: &[Installed<'_>],
    m: &Manifest<'_>,
) -> Result<(), Rejection> {
    let min = Version::parse(min).map_err(|_| reject(Reject::Malformed, i))?;
    // A component in this package satisfies it with its new version; else the installed one.
    let have = match m.component(name) {
        Some(c) => Some(c.to_version),
        None => installed.iter().find(|x| x.name == name).map(|x| x.version),
    };
    let have = have.ok_or(reject(Reject::MissingDependency, i))?;
    let have = Version::parse(have).map_err(|_| reject(Reject::DependencyTooOld, i))?;
    if have < min {
        return Err(reject(Reject::DependencyTooOld, i));
    }
    Ok(())
}

/// SHA-256 of a flash region, read through `buf` (any size; larger is faster).
pub fn hash_region<F: ReadNorFlash>(
    flash: &mut F,
    region: Region,
    buf: &mut [u8],
) -> Result<[u8; 32], F::Error> {
    let mut h = sha2::Sha256::new();
    let mut at = region.start;
    let mut left = region.len as usize;
    while left > 0 && !buf.is_empty() {
        let n = left.min(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or(&mut []);
        flash.read(at, chunk)?;
        h.update(&*chunk);
        at += n as u32;
        left -= n;
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use bluesphere_core::delta::Params;
    use bluesphere_core::package::build::{build_package, ComponentSpec, PackageSpec};
    use bluesphere_core::package::{sha2_digest, Package, HEADER_LEN};
    use bluesphere_core::testkit::{evolve, firmware};
    use p256::ecdsa::SigningKey;
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    fn key() -> SigningKey {
        SigningKey::from_slice(&[3u8; 32]).unwrap()
    }

    struct Fix {
        pkg: Vec<u8>,
        old: Vec<u8>,
    }

    fn package(counter: u32, deps: Vec<(String, String)>, modem: bool) -> Fix {
        let old = firmware(9, 6000);
        let new = evolve(&old, 9);
        let mut components = vec![ComponentSpec {
            name: "main".into(),
            from_version: Some("1.0.0".into()),
            to_version: "1.1.0".into(),
            security_counter: counter,
            load_address: 0,
            old: Some(old.clone()),
            new,
            params: Params::SMALL,
            dependencies: deps,
        }];
        if modem {
            components.push(ComponentSpec {
                name: "modem".into(),
                from_version: None,
                to_version: "3.0.0".into(),
                security_counter: 0,
                load_address: 0,
                old: None,
                new: firmware(10, 3000),
                params: Params::SMALL,
                dependencies: vec![],
            });
        }
        let spec = PackageSpec {
            product_id: "thermo".into(),
            hardware_id: "revB".into(),
            created: 1,
            components,
        };
        Fix {
            pkg: build_package(&spec, &key(), &mut |_| {}).unwrap(),
            old,
        }
    }

    fn parts(pkg: &[u8]) -> (&[u8], &[u8], &[u8]) {
        let p = Package::parse(pkg).unwrap();
        let m_end = HEADER_LEN + p.header.manifest_len as usize;
        (
            &pkg[..HEADER_LEN],
            &pkg[HEADER_LEN..m_end],
            &pkg[m_end..m_end + 64],
        )
    }

    const ID: Identity<'static> = Identity {
        product_id: "thermo",
        hardware_id: "revB",
    };

    fn main_installed(old: &[u8], counter: u32) -> Installed<'_> {
        Installed {
            name: "main",
            version: "1.0.0",
            security_counter: counter,
            image_size: old.len() as u64,
            image_sha256: sha2_digest(old),
        }
    }

    fn run(
        f: &Fix,
        id: &Identity<'_>,
        installed: &[Installed<'_>],
        slot: u64,
    ) -> Result<Admitted, Rejection> {
        let (h, m, s) = parts(&f.pkg);
        admit(h, m, s, &[*key().verifying_key()], id, installed, slot)
    }

    #[test]
    fn accepts_the_right_device() {
        let f = package(5, vec![], false);
        let a = run(&f, &ID, &[main_installed(&f.old, 5)], 1 << 20).unwrap();
        assert_eq!(
            a,
            Admitted {
                key_index: 0,
                components: 1
            }
        );
    }

    #[test]
    fn every_reason_has_a_sentence() {
        for code in 1..=13u8 {
            let r = Reject::try_from(code).unwrap();
            assert_eq!(r.code(), code);
            assert!(r.text().len() > 20, "{code}");
        }
        assert!(Reject::try_from(14).is_err());
    }

    #[test]
    fn every_rejection_has_its_code() {
        let f = package(5, vec![], false);
        let inst = [main_installed(&f.old, 5)];
        let code = |r: Result<Admitted, Rejection>| r.unwrap_err().reason;

        let other = SigningKey::from_slice(&[4u8; 32]).unwrap();
        let (h, m, s) = parts(&f.pkg);
        assert_eq!(
            code(admit(
                h,
                m,
                s,
                &[*other.verifying_key()],
                &ID,
                &inst,
                1 << 20
            )),
            Reject::UnknownKey
        );
        let mut bad_sig = s.to_vec();
        bad_sig[10] ^= 1;
        assert_eq!(
            code(admit(
                h,
                m,
                &bad_sig,
                &[*key().verifying_key()],
                &ID,
                &inst,
                1 << 20
            )),
            Reject::BadSignature
        );
        let mut bad_m = m.to_vec();
        bad_m[12] ^= 1; // inside `created`: structurally fine, signature catches it
        assert_eq!(
            code(admit(
                h,
                &bad_m,
                s,
                &[*key().verifying_key()],
                &ID,
                &inst,
                1 << 20
            )),
            Reject::BadSignature
        );
        assert_eq!(
            code(admit(
                &h[..12],
                m,
                s,
                &[*key().verifying_key()],
                &ID,
                &inst,
                1 << 20
            )),
            Reject::Malformed
        );
        assert_eq!(
            code(admit(
                h,
                &m[..m.len() - 1],
                s,
                &[*key().verifying_key()],
                &ID,
                &inst,
                1 << 20
            )),
            Reject::Malformed
        );

        let wrong_product = Identity {
            product_id: "kettle",
            ..ID
        };
        assert_eq!(
            code(run(&f, &wrong_product, &inst, 1 << 20)),
            Reject::WrongProduct
        );
        let wrong_hw = Identity {
            hardware_id: "revC",
            ..ID
        };
        assert_eq!(
            code(run(&f, &wrong_hw, &inst, 1 << 20)),
            Reject::WrongHardware
        );
        assert_eq!(code(run(&f, &ID, &inst, 1000)), Reject::TooLarge);
        assert_eq!(
            code(run(&f, &ID, &[main_installed(&f.old, 6)], 1 << 20)),
            Reject::Rollback
        );
        let mut other_base = f.old.clone();
        other_base[0] ^= 1;
        assert_eq!(
            code(run(&f, &ID, &[main_installed(&other_base, 5)], 1 << 20)),
            Reject::WrongBase
        );
        assert_eq!(code(run(&f, &ID, &[], 1 << 20)), Reject::NotInstalled);
    }

    #[test]
    fn dependencies_from_the_device_or_the_package() {
        let needs = |v: &str| vec![(String::from("modem"), String::from(v))];
        // Installed modem 2.1.0 satisfies >= 2.0.0 but not >= 2.5.0; a missing one fails.
        let f = package(5, needs("2.0.0"), false);
        let modem = |v: &'static str| Installed {
            name: "modem",
            version: v,
            security_counter: 0,
            image_size: 0,
            image_sha256: [0; 32],
        };
        let ok = [main_installed(&f.old, 5), modem("2.1.0")];
        assert!(run(&f, &ID, &ok, 1 << 20).is_ok());
        let f2 = package(5, needs("2.5.0"), false);
        let r = run(
            &f2,
            &ID,
            &[main_installed(&f2.old, 5), modem("2.1.0")],
            1 << 20,
        )
        .unwrap_err();
        assert_eq!((r.reason, r.component), (Reject::DependencyTooOld, 0));
        let r = run(&f, &ID, &[main_installed(&f.old, 5)], 1 << 20).unwrap_err();
        assert_eq!(r.reason, Reject::MissingDependency);
        // A whole-machine package that brings modem 3.0.0 satisfies >= 2.5.0 itself.
        let f3 = package(5, needs("2.5.0"), true);
        assert!(run(
            &f3,
            &ID,
            &[main_installed(&f3.old, 5), modem("2.1.0")],
            1 << 20
        )
        .is_ok());
    }

    #[test]
    fn split_verification_agrees_with_the_one_buffer_verifier() {
        let f = package(1, vec![], false);
        let p = Package::parse(&f.pkg).unwrap();
        assert!(p.verify(&[*key().verifying_key()]).is_ok());
        assert!(run(&f, &ID, &[main_installed(&f.old, 0)], 1 << 20).is_ok());
        let msg = format!("{:?}", Reject::Rollback as u8);
        assert_eq!(msg, "7");
    }
}
