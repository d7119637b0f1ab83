//! The blog: authors, posts and comments, served from one binary with a durable event log.
//!
//! ```sh
//! cargo run --release --example blog                 # http://127.0.0.1:8080, data in data/blog/
//! cargo run --release --example blog -- --help       # every flag and subcommand
//! cargo run --release --example blog -- replay       # rebuild the state, print the digest
//! ```
//!
//! Routes: `/api/authors`, `/api/posts`, `/api/comments` (list, get, create, replace, patch,
//! delete, `_schema`), `POST /api/posts/{id}/publish` (a command: only a draft can be
//! published), `/openapi.json`, `/docs`, `/health`, `/ready`.
//!
//! Domain rules, enforced on every write path: a post's author must exist; a comment must
//! reference an existing post (a draft or a published one).
use lithair::app::{Id, Params, Rejection, Tx};
use lithair::prelude::*;

/// Someone who writes posts.
#[derive(Model, Clone, Debug)]
pub struct Author {
    /// Assigned by the server.
    #[db(primary_key)]
    pub id: u64,
    /// Display name.
    #[http(validate = "len(1..=80)")]
    pub name: String,
    /// Unique e-mail address.
    #[db(unique)]
    #[http(validate = "email")]
    pub email: String,
}

/// A blog post: a draft until published.
#[derive(Model, Clone, Debug)]
pub struct Post {
    /// Assigned by the server.
    #[db(primary_key)]
    pub id: u64,
    /// The author (must exist).
    #[db(indexed)]
    pub author_id: u64,
    /// Title.
    #[http(validate = "len(1..=200)")]
    pub title: String,
    /// URL slug: unique, and fixed once created.
    #[db(unique)]
    #[lifecycle(immutable)]
    #[http(validate = "len(1..=100)")]
    pub slug: String,
    /// Text.
    #[db(default)]
    pub body: String,
    /// Set by the publish command only.
    #[db(default)]
    #[db(indexed)]
    #[http(read_only)]
    pub published: bool,
    /// When it was published (ms since the Unix epoch, decided by the sequencer).
    #[db(default)]
    #[http(read_only)]
    pub published_at: Option<u64>,
}

/// A reader's comment on a post.
#[derive(Model, Clone, Debug)]
pub struct Comment {
    /// Assigned by the server.
    #[db(primary_key)]
    pub id: u64,
    /// The post (must exist and be published).
    #[db(indexed)]
    pub post_id: u64,
    /// Who wrote it.
    #[http(validate = "len(1..=80)")]
    pub author: String,
    /// Text.
    #[http(validate = "len(1..=2000)")]
    pub body: String,
}

fn not_found(model: &'static str, id: u64) -> Rejection {
    Rejection::NotFound {
        model,
        id: Id::Int(id),
    }
}

/// Publish a draft post.
///
/// Only a draft can be published: a published post answers 409.
#[command(POST "/api/posts/{id}/publish")]
fn publish(tx: &mut Tx<'_>, _: &(), params: &Params) -> Result<Post, Rejection> {
    let id = params.id::<Post>("id")?;
    let post: Post = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Post",
        id: id.clone(),
    })?;
    if post.published {
        return Err(Rejection::Domain {
            status: 409,
            message: format!("post {id} is already published"),
        });
    }
    let patch = PostPatch {
        published: Some(true),
        published_at: Some(Some(tx.timestamp_ms())),
        ..PostPatch::default()
    };
    tx.update::<Post>(&id, patch)
}

/// The blog app; tests build it too.
pub fn app() -> lithair::App {
    lithair::App::new("blog")
        .model::<Author>()
        .model::<Post>()
        .model::<Comment>()
        .check::<Post>(
            |tx, post| match tx.get::<Author>(&Id::Int(post.author_id)) {
                Some(_) => Ok(()),
                None => Err(not_found("Author", post.author_id)),
            },
        )
        // Issue 5: a comment "must reference an existing post, rejected otherwise"; a draft
        // exists, so it takes comments too.
        .check::<Comment>(
            |tx, comment| match tx.get::<Post>(&Id::Int(comment.post_id)) {
                Some(_) => Ok(()),
                None => Err(Rejection::Domain {
                    status: 422,
                    message: format!("post {} does not exist", comment.post_id),
                }),
            },
        )
        .route_command(publish_route())
        // Lists of posts are long and repetitive JSON: gzip for the clients that accept it.
        .compression(lithair::http::middleware::Compression::default())
}

fn main() -> std::process::ExitCode {
    app().run()
}
