//! Cloud identities: the profiles of FIELD-NOTES.md §2.1, their overrides, and
//! the captured WSSE digests of FIELD-NOTES.md §2.6 reproduced per profile.

use dhp2p::codec::cloud::{RequestStyle, SdkHeaders};
use dhp2p::codec::crypto::wsse_digest;
use dhp2p::codec::identity::{
    by_name, default_profile, profiles, resolve, CloudProfile, Dialect, IdentityError,
};
use std::collections::HashMap;

fn profile(name: &str) -> CloudProfile {
    by_name(name).expect("built-in profile")
}

fn digest_with(profile: &CloudProfile, nonce: &str, created: &str) -> String {
    wsse_digest(nonce, created, &profile.username, &profile.key)
}

// FIELD-NOTES.md §2.6 row 1 (KN #17)
#[test]
fn field_notes_2_6_easy4ip_digest() {
    let p = profile("easy4ip");
    assert_eq!(p.username, "cba1b29e32cb17aa46b8ff9e73c7f40b");
    assert_eq!(
        digest_with(&p, "403748975", "2025-07-14T12:10:45Z"),
        "CL16HGn7S4vceptOXNT+hZEmE1I="
    );
}

// FIELD-NOTES.md §2.6 row 2 (KN #13)
#[test]
fn field_notes_2_6_amcrest_digest_kn13() {
    let p = profile("amcrest");
    assert_eq!(
        digest_with(&p, "209134850", "2025-07-22T16:04:17Z"),
        "02dL/ejaecWxeodSS+dDkGzE/+c="
    );
}

// FIELD-NOTES.md §2.6 row 3 (KN #17)
#[test]
fn field_notes_2_6_amcrest_digest_kn17() {
    let p = profile("amcrest");
    assert_eq!(
        digest_with(&p, "1766349743", "2025-07-21T16:35:59Z"),
        "vsyIQ7i4FJITWXO877zLLMOG5hU="
    );
}

// FIELD-NOTES.md §2.6 row 4 (KN #3; a 32-bit unsigned nonce)
#[test]
fn field_notes_2_6_retired_pair_digest() {
    let p = profile("easy4ip-retired");
    assert_eq!(p.username, "P2PClient");
    assert_eq!(
        digest_with(&p, "4256704150", "2023-12-18T19:19:43Z"),
        "HvAqydeFx9pTgUKR4cSMJaoeCiQ="
    );
}

// FIELD-NOTES.md §2.1 (Amcrest username: one literal backslash)
#[test]
fn field_notes_2_1_amcrest_username_has_one_backslash() {
    let p = profile("amcrest");
    assert_eq!(p.username.matches('\\').count(), 1);
    assert_eq!(p.username.len(), "default".len() + 1 + 32);
    assert_eq!(p.address(), "p2p.amcrestview.com:8800");
}

// FIELD-NOTES.md §2.1 table
#[test]
fn field_notes_2_1_profile_table() {
    let all = profiles();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["easy4ip", "easy4ip-retired", "amcrest", "dmss"]);
    assert_eq!(default_profile(), all[0]);
    let dmss = profile("dmss");
    assert_eq!(dmss.address(), "p2p.dolynkcloud.com:8800");
    assert_eq!(dmss.username, "793k5zdi4dd5f037sooag8yo_dolynkc");
    assert_eq!(dmss.key, "ef8hatgmcuk4qamgg4fxx19x33s9q1xy");
    assert_eq!(dmss.dialect, Dialect::Sdk);
    assert_eq!(dmss.request_style(), RequestStyle::Sdk(SdkHeaders::dmss()));
    for legacy in ["easy4ip", "easy4ip-retired", "amcrest"] {
        assert_eq!(profile(legacy).dialect, Dialect::Legacy, "{legacy}");
    }
    assert_eq!(profile("easy4ip").address(), "www.easy4ipcloud.com:8800");
}

#[test]
fn aliases_and_case_are_accepted() {
    assert_eq!(profile("Dolynk"), profile("dmss"));
    assert_eq!(profile("P2PClient"), profile("easy4ip-retired"));
    assert_eq!(profile("EASY4IP"), profile("easy4ip"));
    assert_eq!(by_name("imou"), None);
}

#[test]
fn custom_host_port_takes_the_default_pair() {
    let p = resolve("127.0.0.1:18800").unwrap();
    assert_eq!(
        (p.name.as_str(), p.host.as_str(), p.port),
        ("custom", "127.0.0.1", 18800)
    );
    assert_eq!(p.username, default_profile().username);
    assert_eq!(p.dialect, Dialect::Legacy);
    assert_eq!(resolve("dmss").unwrap(), profile("dmss"));
    assert!(matches!(
        resolve("nowhere"),
        Err(IdentityError::UnknownProfile { .. })
    ));
    assert!(matches!(
        resolve("host:0"),
        Err(IdentityError::UnknownProfile { .. })
    ));
    assert!(matches!(
        resolve("host:99999"),
        Err(IdentityError::UnknownProfile { .. })
    ));
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn overrides_apply_each_variable() {
    let p = default_profile()
        .with_overrides(env(&[
            ("DHP2P_CLOUD_HOST", "127.0.0.1"),
            ("DHP2P_CLOUD_PORT", "18800"),
            ("DHP2P_WSSE_USER", "user"),
            ("DHP2P_WSSE_KEY", "key"),
            ("DHP2P_DIALECT", "SDK"),
        ]))
        .unwrap();
    assert_eq!(p.address(), "127.0.0.1:18800");
    assert_eq!((p.username.as_str(), p.key.as_str()), ("user", "key"));
    assert_eq!(p.dialect, Dialect::Sdk);
    assert_eq!(p.name, "easy4ip");
}

#[test]
fn no_overrides_leave_the_profile_unchanged() {
    let p = profile("amcrest").with_overrides(|_| None).unwrap();
    assert_eq!(p, profile("amcrest"));
}

#[test]
fn bad_overrides_are_errors_naming_the_variable() {
    let bad_port = default_profile().with_overrides(env(&[("DHP2P_CLOUD_PORT", "+80")]));
    assert_eq!(
        bad_port,
        Err(IdentityError::BadPort {
            var: "DHP2P_CLOUD_PORT",
            value: "+80".into()
        })
    );
    assert!(matches!(
        default_profile().with_overrides(env(&[("DHP2P_CLOUD_PORT", "0")])),
        Err(IdentityError::BadPort { .. })
    ));
    assert!(matches!(
        default_profile().with_overrides(env(&[("DHP2P_DIALECT", "nfv2")])),
        Err(IdentityError::BadDialect { .. })
    ));
    assert_eq!(
        default_profile().with_overrides(env(&[("DHP2P_WSSE_KEY", "")])),
        Err(IdentityError::Empty {
            var: "DHP2P_WSSE_KEY"
        })
    );
}

#[test]
fn dialect_names_round_trip() {
    for d in [Dialect::Legacy, Dialect::Sdk] {
        assert_eq!(d.to_string().parse::<Dialect>().unwrap(), d);
    }
    assert_eq!("dh".parse::<Dialect>().unwrap(), Dialect::Legacy);
    assert_eq!("nf".parse::<Dialect>().unwrap(), Dialect::Sdk);
    assert_eq!(
        Dialect::Legacy.default_style(),
        RequestStyle::Legacy {
            content_headers: true
        }
    );
}
