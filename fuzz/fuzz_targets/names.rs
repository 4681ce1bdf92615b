//! Fuzzes the mapping from PostgreSQL identifiers to warehouse folders
//! (`deltagate::storage::names`): for any name, its folder is one path segment of plain
//! characters that every layer (URL joining, `object_store` paths) leaves alone, strictly
//! inside its parent; the folder decodes back to the name (so no two names share a folder);
//! and any folder that decodes is exactly the encoding of what it decodes to.

#![no_main]

use deltagate::storage::names::{decode, encode};
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        check_name(name);
    }
    // Whatever a folder found in the warehouse is called, decoding never yields a second
    // spelling of a name.
    if let Ok(folder) = std::str::from_utf8(data)
        && let Some(name) = decode(folder)
    {
        assert_eq!(encode(&name).as_deref(), Ok(folder));
    }
});

fn check_name(name: &str) {
    let Ok(folder) = encode(name) else {
        assert!(name.is_empty(), "only the empty name has no folder");
        return;
    };
    assert!(!folder.is_empty());
    assert!(folder != "." && folder != ".." && !folder.starts_with('.'));
    assert_ne!(folder, "_delta_log");
    assert!(
        folder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.!".contains(&b)),
        "{folder:?}"
    );
    assert_eq!(decode(&folder).as_deref(), Some(name), "{folder:?}");
    // As the catalog builds a table's location: `<warehouse>/<schema>/<table>/`.
    for root in ["file:///srv/warehouse/", "s3://bucket/prefix/"] {
        let base = Url::parse(root).expect("static URL");
        let url = base
            .join(&format!("{folder}/{folder}/"))
            .expect("a folder joins");
        assert_eq!(url.path(), format!("{}{folder}/{folder}/", base.path()));
        assert_eq!(url.host_str(), base.host_str());
    }
    // As `object_store` keeps it: one part, spelled the same.
    let path = object_store::path::Path::from(folder.as_str());
    assert_eq!(path.as_ref(), folder);
    assert_eq!(path.parts().count(), 1);
}
