//! A WebSocket endpoint on an HTTP route: the upgrade checks, then a [`Session`] that lives in
//! the HTTP reactor as an [`Upgraded`] protocol (no thread per socket).
//!
//! Owns: building the 101 answer with the session attached, connection ids, joining the hub
//! with the reactor's waker, and the polite close on server shutdown.
//! Must not: touch sockets or clocks (the reactor passes time in).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::close;
use super::connection::Config;
use super::deflate::DeflateConfig;
use super::hub::ConnId;
use super::session::{Session, SharedHub, WsHandler};
use super::upgrade::{accept, Anonymous, Authenticate};
use crate::http::problem::Problem;
use crate::http::upgrade::{UpgradeWaker, Upgraded};
use crate::http::{Request, Response};

/// Builds the handler of one accepted connection, from the authenticated user name.
pub type HandlerFactory = dyn Fn(&Request, &str) -> Box<dyn WsHandler> + Send + Sync;

/// Chooses a subprotocol among those offered (client's order of preference).
pub type ChooseProtocol = dyn Fn(&[String]) -> Option<String> + Send + Sync;

/// Connection ids, unique in the process (a hub may be shared by several endpoints).
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A WebSocket route: `router.get("/ws", move |req| endpoint.respond(req))`.
pub struct Endpoint {
    config: Config,
    deflate: DeflateConfig,
    hub: Option<Arc<SharedHub>>,
    auth: Box<dyn Authenticate>,
    choose_protocol: Box<ChooseProtocol>,
    factory: Option<Box<HandlerFactory>>,
}

impl Endpoint {
    /// An endpoint whose connections run handlers built by `factory`, anonymous, with server
    /// defaults, no hub and no subprotocol.
    pub fn new(
        factory: impl Fn(&Request, &str) -> Box<dyn WsHandler> + Send + Sync + 'static,
    ) -> Endpoint {
        Endpoint {
            config: Config::SERVER,
            deflate: DeflateConfig::ENABLED,
            hub: None,
            auth: Box::new(Anonymous),
            choose_protocol: Box::new(|_: &[String]| None),
            factory: Some(Box::new(factory)),
        }
    }

    /// An endpoint without a handler factory: every upgrade goes through
    /// [`Endpoint::respond_with`], which builds the handler per request.
    pub fn per_request() -> Endpoint {
        Endpoint {
            config: Config::SERVER,
            deflate: DeflateConfig::ENABLED,
            hub: None,
            auth: Box::new(Anonymous),
            choose_protocol: Box::new(|_: &[String]| None),
            factory: None,
        }
    }

    /// Connection limits and timers.
    pub fn config(mut self, config: Config) -> Endpoint {
        self.config = config;
        self
    }

    /// Whether permessage-deflate (RFC 7692) is agreed with clients that offer it (by default
    /// it is). The agreed parameters land in each connection's `Config::deflate`.
    pub fn deflate(mut self, deflate: DeflateConfig) -> Endpoint {
        self.deflate = deflate;
        self
    }

    /// Registers every connection with `hub` (rooms, presence, broadcast).
    pub fn hub(mut self, hub: Arc<SharedHub>) -> Endpoint {
        self.hub = Some(hub);
        self
    }

    /// The authentication hook run on the upgrade request.
    pub fn authenticate(mut self, auth: impl Authenticate) -> Endpoint {
        self.auth = Box::new(auth);
        self
    }

    /// The subprotocol choice.
    pub fn protocols(
        mut self,
        choose: impl Fn(&[String]) -> Option<String> + Send + Sync + 'static,
    ) -> Endpoint {
        self.choose_protocol = Box::new(choose);
        self
    }

    /// Answers an upgrade request: the 101 with a session attached, or the refusal.
    pub fn respond(&self, request: &Request) -> Response {
        match &self.factory {
            Some(factory) => self.respond_with(request, |request, user| factory(request, user)),
            None => Problem::internal()
                .with_detail("this WebSocket endpoint builds handlers per request")
                .into_response(),
        }
    }

    /// Like [`Endpoint::respond`], with the handler built by `make` (for handlers that carry
    /// per-request state prepared by the route, like a live query's first page).
    pub fn respond_with(
        &self,
        request: &Request,
        make: impl FnOnce(&Request, &str) -> Box<dyn WsHandler>,
    ) -> Response {
        let accepted = match accept(request, &*self.auth, &*self.choose_protocol, self.deflate) {
            Ok(accepted) => accepted,
            Err(refusal) => return refusal,
        };
        let handler = make(request, &accepted.user);
        let upgraded = WsUpgraded {
            id: ConnId(NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)),
            config: Config {
                deflate: accepted.deflate,
                ..self.config
            },
            user: accepted.user,
            hub: self.hub.clone(),
            pending: Some(handler),
            session: None,
        };
        Response::upgrade(accepted.response, Box::new(upgraded))
    }
}

/// A session waiting for its start (it needs the reactor's clock and waker).
struct WsUpgraded {
    id: ConnId,
    config: Config,
    user: String,
    hub: Option<Arc<SharedHub>>,
    pending: Option<Box<dyn WsHandler>>,
    session: Option<Session>,
}

impl WsUpgraded {
    fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("the reactor starts an upgraded connection before using it")
    }
}

impl Upgraded for WsUpgraded {
    fn start(&mut self, waker: UpgradeWaker, now_ms: u64) {
        let handler = self.pending.take().expect("started once");
        let mut session = Session::new(self.id, self.config, handler, now_ms);
        let joined = match &self.hub {
            Some(hub) => session.join_hub(Arc::clone(hub), &self.user, waker),
            None => Ok(()),
        };
        session.start();
        if joined.is_err() {
            // The hub is full or refused us: the client should retry later.
            session.close(close::TRY_AGAIN_LATER, "server busy");
        }
        self.session = Some(session);
    }

    fn on_input(&mut self, bytes: &[u8]) {
        self.session().on_input(bytes);
    }

    fn on_eof(&mut self) {
        self.session().on_eof();
    }

    fn on_wake(&mut self) {
        self.session().on_wake();
    }

    fn on_writable(&mut self) {
        self.session().on_writable();
    }

    fn on_tick(&mut self, now_ms: u64) {
        self.session().on_tick(now_ms);
    }

    fn output(&self) -> &[u8] {
        self.session
            .as_ref()
            .map_or(&[], |session| session.output())
    }

    fn consume_output(&mut self, count: usize) {
        self.session().consume_output(count);
    }

    fn is_finished(&self) -> bool {
        self.session
            .as_ref()
            .is_none_or(|session| session.is_finished())
    }

    fn begin_shutdown(&mut self) {
        self.session()
            .close(close::GOING_AWAY, "server shutting down");
    }
}
