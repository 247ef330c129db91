//! Extension maps reused from one request to the next, per thread.
//!
//! `http::Extensions` allocates its map (a box and a hash table) at the first insert, and
//! every request carries facts in it (the connection, the matched route, the chosen
//! endpoint) as every response does (the upstream's address and latency). The map of a
//! request that the proxy sent upstream is not dropped with the upstream request: the proxy
//! moves it, emptied, to the response ([`adopt`]), and the server, once it hands the final
//! response to hyper, keeps the map for the next request it reads on this thread ([`keep`],
//! [`take`]). Two allocations of each message's map are saved; the entries themselves are
//! still boxed one by one.
//!
//! Only maps the gateway built are kept: the proxy marks the map it moves ([`Reusable`]), so
//! a response from another client, whose map may hold hyper's private entries (original
//! header case), is never emptied, and a map holding a custom reason phrase is left whole for
//! hyper to write. At most [`KEEP`] maps wait per thread.

use std::cell::RefCell;

use http::Extensions;

/// How many emptied maps a thread keeps at most.
pub(crate) const KEEP: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Extensions>> = const { RefCell::new(Vec::new()) };
}

/// Marks a response map the gateway moved there from its request: safe to empty and reuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reusable;

/// An emptied map kept by this thread, if any.
pub(crate) fn take() -> Option<Extensions> {
    SPARE.with(|spare| spare.try_borrow_mut().ok()?.pop())
}

/// Gives a response whose map is empty `spare`, a request's map (when it has entries, so it
/// has its allocation), emptied and marked [`Reusable`].
pub(crate) fn adopt(extensions: &mut Extensions, mut spare: Extensions) {
    if extensions.is_empty() && !spare.is_empty() {
        spare.clear();
        spare.insert(Reusable);
        *extensions = spare;
    }
}

/// Keeps the map of a final response, handed to hyper next, for this thread's next request,
/// when the gateway built it and hyper needs nothing in it.
pub(crate) fn keep(extensions: &mut Extensions) {
    if extensions.get::<Reusable>().is_none()
        || extensions.get::<hyper::ext::ReasonPhrase>().is_some()
    {
        return;
    }
    let mut map = std::mem::take(extensions);
    map.clear();
    SPARE.with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < KEEP
        {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_map() -> Extensions {
        let mut map = Extensions::new();
        map.insert(1u64);
        map
    }

    #[test]
    fn a_map_moved_by_the_proxy_is_kept_emptied_and_reused() {
        let mut request = Extensions::new();
        request.insert(7u32);
        let mut response = Extensions::new();
        adopt(&mut response, request);
        assert!(
            response.get::<u32>().is_none(),
            "the request's entries are dropped"
        );
        response.insert("upstream");
        keep(&mut response);
        assert!(response.is_empty(), "handed to hyper empty");
        let reused = take().expect("kept");
        assert!(reused.is_empty());
        assert!(take().is_none());
    }

    #[test]
    fn maps_the_gateway_did_not_build_or_hyper_reads_are_left_alone() {
        // A response map from elsewhere (no marker): left as it is.
        let mut foreign = Extensions::new();
        foreign.insert(1u8);
        keep(&mut foreign);
        assert_eq!(foreign.get::<u8>(), Some(&1));
        // A response that already has a map keeps it; the request's is not adopted.
        let mut request = Extensions::new();
        request.insert(7u32);
        adopt(&mut foreign, request);
        assert!(foreign.get::<Reusable>().is_none());
        // A custom reason phrase stays for hyper to write.
        let mut phrased = Extensions::new();
        adopt(&mut phrased, request_map());
        phrased.insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        keep(&mut phrased);
        assert!(phrased.get::<hyper::ext::ReasonPhrase>().is_some());
        assert!(take().is_none());
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_maps() {
        for _ in 0..KEEP + 10 {
            let mut response = Extensions::new();
            adopt(&mut response, request_map());
            keep(&mut response);
        }
        let mut kept = 0;
        while take().is_some() {
            kept += 1;
        }
        assert_eq!(kept, KEEP);
    }
}
