//! CDI names: a spec's kind (`vendor/class`) and a device's fully
//! qualified name (`vendor/class=name`), with the characters the CDI spec
//! allows in each part.

/// A parsed `vendor/class=name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName<'a> {
    pub vendor: &'a str,
    pub class: &'a str,
    pub name: &'a str,
}

/// Splits and checks a fully qualified device name; the error says which
/// part is wrong.
pub fn parse_qualified(device: &str) -> Result<QualifiedName<'_>, String> {
    let Some((kind, name)) = device.split_once('=') else {
        return Err("is not a fully qualified CDI name vendor.com/class=name (no '=')".into());
    };
    let (vendor, class) = parse_kind(kind)?;
    check_device_name(name)?;
    Ok(QualifiedName {
        vendor,
        class,
        name,
    })
}

/// Splits and checks a kind `vendor/class`.
pub fn parse_kind(kind: &str) -> Result<(&str, &str), String> {
    let Some((vendor, class)) = kind.split_once('/') else {
        return Err(format!("kind {kind:?} is not vendor/class (no '/')"));
    };
    check_vendor_or_class("vendor", vendor)?;
    check_vendor_or_class("class", class)?;
    Ok((vendor, class))
}

/// Vendor and class: a letter first, an alphanumeric last, and letters,
/// digits, '_', '-' and '.' between.
fn check_vendor_or_class(what: &str, s: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(format!("{what} is empty"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{what} {s:?} must start with a letter"));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!("{what} {s:?} must end with a letter or digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("{what} {s:?} holds {c:?}"));
    }
    Ok(())
}

/// A device name: alphanumerics at both ends, and letters, digits, '_',
/// '-', '.' and ':' between.
pub fn check_device_name(s: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err("device name is empty".into());
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "device name {s:?} must start and end with a letter or digit"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("device name {s:?} holds {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_and_validate() {
        let q = parse_qualified("nvidia.com/gpu=0").unwrap();
        assert_eq!((q.vendor, q.class, q.name), ("nvidia.com", "gpu", "0"));
        let q = parse_qualified("vendor.com/foo-bar123.B_az=dev:1.a").unwrap();
        assert_eq!(q.class, "foo-bar123.B_az");
        assert_eq!(q.name, "dev:1.a");
        for bad in [
            "gpu0",
            "/dev/gpu0",
            "vendor.com=gpu0",
            "vendor.com/=x",
            "/gpu=x",
            "1vendor.com/gpu=x",
            "vendor.com/gpu-=x",
            "vendor.com/gpu/x=y",
            "vendor.com/gpu=",
            "vendor.com/gpu=-x",
            "vendor.com/gpu=x:",
            "vendor.com/gpu=a b",
            "vendor.com/gpu=a=b",
        ] {
            assert!(parse_qualified(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_kind("vendor.com/foo/").is_err());
        assert!(parse_kind("foo").is_err());
        assert_eq!(parse_kind("v/c").unwrap(), ("v", "c"));
    }
}
