//! The web console: three static files served at `/ui/`, embedded in the binary.
//!
//! The page is plain HTML with one hand-written script (`console/console.js`) and one style
//! sheet; there is no build step. The script calls the service's JSON API with the bearer token
//! the user pastes into its sign-in form (kept in `sessionStorage`, never in a URL or a cookie)
//! and writes every string it receives with `textContent`. Every answer under `/ui/` carries
//! [`CONTENT_SECURITY_POLICY`], which allows no inline script or style and no other origin, and
//! `X-Content-Type-Options: nosniff`.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP_HEADER, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The policy on every `/ui/` answer: only this origin's script, style, images and API; no
/// inline code, no framing, no `<base>`, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../console/index.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");

/// The console's routes (`/ui`, `/ui/`, its script and style sheet; anything else under
/// `/ui/` is a 404 with the same headers). Public: they carry no data.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/ui/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route("/ui/console.css", get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }))
        .route("/ui/{*rest}", get(not_found))
}

async fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "no such console page; open /ui/").into_response();
    secure(&mut response, "text/plain; charset=utf-8");
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    secure(&mut response, content_type);
    response
}

/// Sets the content type and the console's security headers.
fn secure(response: &mut Response, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CSP_HEADER, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_path(path: &str) -> Response {
        let app: Router = router();
        let request =
            axum::http::Request::builder().uri(path).body(axum::body::Body::empty()).expect("req");
        tower::ServiceExt::oneshot(app, request).await.expect("response")
    }

    #[test]
    fn every_console_answer_carries_the_policy_and_nosniff() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            for (path, status, kind) in [
                ("/ui/", StatusCode::OK, "text/html"),
                ("/ui/console.js", StatusCode::OK, "text/javascript"),
                ("/ui/console.css", StatusCode::OK, "text/css"),
                ("/ui/elsewhere", StatusCode::NOT_FOUND, "text/plain"),
            ] {
                let response = get_path(path).await;
                assert_eq!(response.status(), status, "{path}");
                let headers = response.headers();
                assert_eq!(headers[CSP_HEADER], CONTENT_SECURITY_POLICY, "{path}");
                assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
                let content_type = headers[CONTENT_TYPE].to_str().expect("ascii");
                assert!(content_type.starts_with(kind), "{path}: {content_type}");
            }
            let response = get_path("/ui").await;
            assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        });
    }

    /// Whether `html` has an attribute like ` onclick=` (white space, `on`, letters, `=`).
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices("on").any(|(at, _)| {
            let before = html[..at].chars().next_back().is_some_and(char::is_whitespace);
            let rest = html[at + 2..].trim_start_matches(|c: char| c.is_ascii_lowercase());
            before && rest.len() < html.len() - at - 2 && rest.trim_start().starts_with('=')
        })
    }

    #[test]
    fn the_handler_check_finds_handlers() {
        assert!(has_handler_attribute("<img src=x onerror=alert(1)>"));
        assert!(has_handler_attribute("<b onclick = \"x\">"));
        assert!(!has_handler_attribute("<p>only one option</p>"));
    }

    #[test]
    fn the_page_has_no_inline_script_style_or_handler() {
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "inline <style> in index.html");
        assert!(!lower.contains("style="), "a style attribute in index.html");
        assert!(!has_handler_attribute(&lower), "an event handler attribute in index.html");
        let scripts: Vec<&str> = lower.split("<script").skip(1).collect();
        assert_eq!(scripts.len(), 1, "index.html loads exactly one script");
        assert!(scripts.iter().all(|s| s.trim_start().starts_with("src=\"/ui/console.js\"")));
        // The script writes what it receives as text, never as markup.
        for sink in ["innerhtml", "outerhtml", "insertadjacenthtml", "document.write", "eval("] {
            assert!(!CONSOLE_JS.to_ascii_lowercase().contains(sink), "console.js uses {sink}");
        }
    }
}
