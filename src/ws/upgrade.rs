//! The WebSocket side of an HTTP upgrade on a route: checking an `http::Request`, the
//! authentication hook, and the 101 or refusal `http::Response`.
//!
//! Owns: the order of the checks (handshake rules first, so a plain GET gets 426 whoever sends
//! it; then authentication; then subprotocol choice and permessage-deflate negotiation) and the
//! shape of the answers.
//! Must not: write to sockets or keep the request. Handing the socket to a [`super::Session`]
//! after the 101 is the HTTP reactor's upgrade hook.

use crate::http::problem::Problem;
use crate::http::{Request, Response, Version};

use super::deflate::{DeflateConfig, Params};
use super::handshake::{self, HandshakeError, Upgrade};

/// Decides who opens a WebSocket, from the upgrade request (a session cookie, an
/// `Authorization` header, a token in the query...). Sessions and tokens plug in here.
pub trait Authenticate: Send + Sync + 'static {
    /// The user name the hub will know this connection by, or the response to send instead of
    /// the 101 (typically 401 or 403).
    fn authenticate(&self, request: &Request) -> Result<String, Response>;
}

impl<F> Authenticate for F
where
    F: Fn(&Request) -> Result<String, Response> + Send + Sync + 'static,
{
    fn authenticate(&self, request: &Request) -> Result<String, Response> {
        self(request)
    }
}

/// Lets everyone in under the name `anonymous`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anonymous;

impl Authenticate for Anonymous {
    fn authenticate(&self, _request: &Request) -> Result<String, Response> {
        Ok("anonymous".to_string())
    }
}

/// An accepted upgrade: the 101 answer and what the session needs to know.
#[derive(Debug)]
pub struct Accepted {
    /// The `101 Switching Protocols` response (no body).
    pub response: Response,
    /// Who authentication said the client is.
    pub user: String,
    /// The subprotocol chosen, if any (echoed in `Sec-WebSocket-Protocol`).
    pub protocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any (answered in
    /// `Sec-WebSocket-Extensions`); the connection's `Config::deflate`.
    pub deflate: Option<Params>,
}

/// Checks an upgrade request and builds the answer. `choose_protocol` picks one of the offered
/// subprotocols (in the client's order of preference) or none; a choice that was not offered is
/// ignored. permessage-deflate is agreed when `deflate` enables it and the client offers it
/// acceptably. `Err` is the complete refusal to send.
pub fn accept(
    request: &Request,
    auth: &dyn Authenticate,
    choose_protocol: &dyn Fn(&[String]) -> Option<String>,
    deflate: DeflateConfig,
) -> Result<Accepted, Response> {
    let upgrade = check(request).map_err(|error| refusal(&error))?;
    let user = auth.authenticate(request)?;
    let protocol =
        choose_protocol(&upgrade.protocols).filter(|chosen| upgrade.protocols.contains(chosen));
    let agreed = if deflate.enabled {
        upgrade.negotiate_deflate()
    } else {
        None
    };
    let mut response = Response::new(101);
    for (name, value) in upgrade.response_headers_with(protocol.as_deref(), agreed.as_ref()) {
        response.headers.append(name, value);
    }
    Ok(Accepted {
        response,
        user,
        protocol,
        deflate: agreed,
    })
}

/// The handshake rules of RFC 6455 §4.2.1 applied to a parsed request.
pub fn check(request: &Request) -> Result<Upgrade, HandshakeError> {
    handshake::validate(
        request.method.as_str(),
        request.version == Version::Http11,
        request.headers.iter(),
    )
}

/// The response refusing an upgrade, with the headers the status calls for.
pub fn refusal(error: &HandshakeError) -> Response {
    // A problem document like every other HTTP error of the server (a client that sees 400
    // or 426 reads one format), with the headers the refusal needs (426's
    // `Sec-WebSocket-Version`, say).
    let mut problem = Problem::new(error.status()).with_detail(error.to_string());
    for (name, value) in error.headers() {
        problem = problem.with_header(name, value);
    }
    problem.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn upgrade_request() -> Request {
        let mut request = Request::new(Method::Get, "/ws?token=t0k");
        for (name, value) in [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "v2.chat, v1.chat"),
        ] {
            request.headers.append(name, value);
        }
        request
    }

    fn token_auth(request: &Request) -> Result<String, Response> {
        match request.query.as_str() {
            "token=t0k" => Ok("ann".to_string()),
            _ => Err(Response::text(401, "a valid token is required")),
        }
    }

    fn no_protocol(_offered: &[String]) -> Option<String> {
        None
    }

    #[test]
    fn accepted_upgrade_answers_101() {
        let choose = |offered: &[String]| offered.iter().find(|p| p.as_str() == "v1.chat").cloned();
        let Ok(accepted) = accept(
            &upgrade_request(),
            &token_auth,
            &choose,
            DeflateConfig::ENABLED,
        ) else {
            panic!("refused")
        };
        assert_eq!(accepted.response.status, 101);
        assert_eq!(
            accepted.response.headers.get("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(accepted.response.headers.get("upgrade"), Some("websocket"));
        assert_eq!(
            accepted.response.headers.get("sec-websocket-protocol"),
            Some("v1.chat")
        );
        assert!(accepted.response.body.is_empty());
        assert_eq!(
            (accepted.user.as_str(), accepted.protocol.as_deref()),
            ("ann", Some("v1.chat"))
        );
    }

    #[test]
    fn unoffered_protocol_choice_is_ignored() {
        let choose = |_offered: &[String]| Some("v9".to_string());
        let Ok(accepted) = accept(
            &upgrade_request(),
            &Anonymous,
            &choose,
            DeflateConfig::ENABLED,
        ) else {
            panic!("refused")
        };
        assert_eq!(accepted.protocol, None);
        assert_eq!(
            accepted.response.headers.get("sec-websocket-protocol"),
            None
        );
        assert_eq!(accepted.user, "anonymous");
    }

    #[test]
    fn authentication_refuses_after_the_handshake_rules() {
        let mut request = upgrade_request();
        request.set_target("/ws?token=wrong");
        let Err(response) = accept(&request, &token_auth, &no_protocol, DeflateConfig::ENABLED)
        else {
            panic!("accepted")
        };
        assert_eq!(response.status, 401);
        // A request that is not an upgrade gets 426 before authentication runs.
        let plain = Request::new(Method::Get, "/ws");
        let Err(response) = accept(&plain, &token_auth, &no_protocol, DeflateConfig::ENABLED)
        else {
            panic!("accepted")
        };
        assert_eq!(
            (response.status, response.headers.get("upgrade")),
            (426, Some("websocket"))
        );
    }

    #[test]
    fn permessage_deflate_is_agreed_unless_disabled() {
        let mut request = upgrade_request();
        request.headers.append(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; server_max_window_bits=20, permessage-deflate; client_max_window_bits",
        );
        request.headers.append(
            "Sec-WebSocket-Extensions",
            "x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover",
        );
        let Ok(accepted) = accept(&request, &Anonymous, &no_protocol, DeflateConfig::ENABLED)
        else {
            panic!("refused")
        };
        // The first offer is invalid (20 bits), the second acceptable.
        assert_eq!(accepted.deflate, Some(Params::DEFAULT));
        assert_eq!(
            accepted.response.headers.get("sec-websocket-extensions"),
            Some("permessage-deflate")
        );
        let Ok(declined) = accept(&request, &Anonymous, &no_protocol, DeflateConfig::DISABLED)
        else {
            panic!("refused")
        };
        assert_eq!(declined.deflate, None);
        assert_eq!(
            declined.response.headers.get("sec-websocket-extensions"),
            None
        );
        let Ok(plain) = accept(
            &upgrade_request(),
            &Anonymous,
            &no_protocol,
            DeflateConfig::ENABLED,
        ) else {
            panic!("refused")
        };
        assert_eq!(plain.deflate, None, "nothing offered, nothing agreed");
    }

    #[test]
    fn refusals_carry_their_headers() {
        let mut request = upgrade_request();
        request.headers.insert("Sec-WebSocket-Version", "8");
        let Err(response) = accept(&request, &Anonymous, &no_protocol, DeflateConfig::ENABLED)
        else {
            panic!("accepted")
        };
        assert_eq!(
            (
                response.status,
                response.headers.get("sec-websocket-version")
            ),
            (426, Some("13"))
        );
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/problem+json"),
            "a refusal is a problem document like the server's other errors"
        );
        let mut request = upgrade_request();
        request.method = Method::Post;
        let Err(response) = accept(&request, &Anonymous, &no_protocol, DeflateConfig::ENABLED)
        else {
            panic!("accepted")
        };
        assert_eq!(
            (response.status, response.headers.get("allow")),
            (405, Some("GET"))
        );
        let mut request = upgrade_request();
        request.version = Version::Http10;
        assert_eq!(check(&request), Err(HandshakeError::HttpVersion));
    }
}
