use super::*;

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

#[test]
fn every_asset_has_its_type_and_the_security_headers() {
    for (name, content_type, _) in ASSETS {
        let r = asset(name);
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        assert_eq!(header(&r, "content-type"), *content_type, "{name}");
        assert_eq!(header(&r, "content-security-policy"), CSP, "{name}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "referrer-policy"), "no-referrer");
        assert_eq!(header(&r, "cache-control"), "no-store");
    }
    let r = asset("../Cargo.toml");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, "content-security-policy"), CSP);
}

/// A guard beside the browser test: the scripts never build markup from
/// strings, evaluate text or touch cookies, and the page has no inline
/// script or style.
#[test]
fn the_console_builds_no_markup_from_text() {
    for (name, _, bytes) in ASSETS {
        let text = String::from_utf8_lossy(bytes);
        if name.ends_with(".js") {
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "document.cookie",
                "localStorage",
                "setAttribute(\"style\"",
            ] {
                assert!(!text.contains(banned), "{name} contains {banned}");
            }
        }
        if *name == "index.html" {
            assert!(!text.contains("<style"), "inline style in {name}");
            assert!(!text.contains("style="), "style attribute in {name}");
            for (i, _) in text.match_indices("<script") {
                let tag = &text[i..i + text[i..].find('>').unwrap()];
                assert!(tag.contains("src=\"/console/"), "inline script: {tag}");
            }
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
