//! Reading cookies from request headers (for consistent hashing and token lookup).

use http::HeaderMap;
use http::header::COOKIE;

/// The values of every cookie named `name` in the request's `Cookie` lines, trimmed.
pub(crate) fn values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cookie_of_a_name_is_found_across_lines() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "x=1; session = abc ;y=2".parse().unwrap());
        headers.append(COOKIE, "session=def".parse().unwrap());
        let found: Vec<&[u8]> = values(&headers, "session").collect();
        assert_eq!(found, [&b"abc"[..], &b"def"[..]]);
        assert_eq!(values(&headers, "sess").count(), 0);
    }
}
