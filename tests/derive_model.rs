//! `#[derive(Model)]` end to end: models declared only with the derive and its attributes,
//! driven through the engine handle and over HTTP on real sockets, plus codec round-trips and
//! the schema-evolution golden test (old bytes and an old log read by a model that gained
//! defaulted fields).

use std::path::PathBuf;

use lithair::app::{FieldKind, Handle, ModelEvent, Rejection, Rule, WriteError};
use lithair::json;
use lithair::prelude::*;

mod common;
use common::{request, serve_options};

#[derive(Model, Clone, Debug, PartialEq)]
struct Post {
    #[db(primary_key)]
    id: u64,
    #[http(validate = "len(1..=20)")]
    title: String,
    #[db(unique)]
    #[lifecycle(immutable)]
    slug: String,
    #[db(indexed, default)]
    published: bool,
    #[db(default = 7)]
    views: u64,
    #[db(default = "draft")]
    status: String,
    #[http(skip)]
    secret: String,
    #[http(read_only)]
    score: u64,
    #[http(validate = "email")]
    author_email: Option<String>,
    #[http(validate = "url")]
    link: Option<String>,
    #[db(default)]
    #[http(validate = "range(0..=5)")]
    rating: i32,
}

/// A client-supplied String key, `rename_all`, and the `-ies` plural.
#[derive(Model, Clone, Debug, PartialEq)]
#[json(rename_all = "camelCase")]
struct Category {
    #[db(primary_key)]
    code: String,
    #[http(validate = "len(2..)")]
    display_name: String,
    #[json(rename = "parent")]
    parent_code: Option<String>,
}

/// The `-es` plural.
#[derive(Model, Clone, Debug)]
struct Address {
    #[db(primary_key)]
    id: u64,
    street: String,
}

/// Just `s`.
#[derive(Model, Clone, Debug)]
struct Person {
    #[db(primary_key)]
    id: u64,
    name: String,
}

/// Explicit path and name.
#[derive(Model, Clone, Debug)]
#[model(path = "/things", name = "Thing")]
struct Item {
    #[db(primary_key)]
    id: u64,
    label: String,
}

fn app() -> App {
    App::new("derive-model-test")
        .model::<Post>()
        .model::<Category>()
        .model::<Address>()
        .model::<Person>()
        .model::<Item>()
}

fn post(title: &str, slug: &str) -> Post {
    Post {
        id: 0,
        title: title.into(),
        slug: slug.into(),
        published: false,
        views: 0,
        status: "draft".into(),
        secret: "s3cret".into(),
        score: 0,
        author_email: None,
        link: None,
        rating: 0,
    }
}

#[test]
fn generated_metadata() {
    assert_eq!(<Post as Model>::NAME, "Post");
    assert_eq!(<Post as Model>::PATH, "/api/posts");
    assert_eq!(<Category as Model>::PATH, "/api/categories");
    assert_eq!(<Address as Model>::PATH, "/api/addresses");
    assert_eq!(<Person as Model>::PATH, "/api/persons");
    assert_eq!(
        (<Item as Model>::PATH, <Item as Model>::NAME),
        ("/things", "Thing")
    );
    assert_eq!(<Post as Model>::PRIMARY_KEY, 0);
    let fields = <Post as Model>::FIELDS;
    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "id",
            "title",
            "slug",
            "published",
            "views",
            "status",
            "secret",
            "score",
            "author_email",
            "link",
            "rating"
        ]
    );
    assert!(fields[0].primary_key && fields[0].kind == FieldKind::UInt);
    assert_eq!(
        fields[1].rules,
        [Rule::Len {
            min: 1,
            max: Some(20)
        }]
    );
    assert!(fields[2].unique && fields[2].immutable);
    assert!(fields[3].indexed && fields[3].has_default && fields[3].kind == FieldKind::Bool);
    assert!(fields[6].skip && fields[7].read_only);
    assert!(fields[8].optional && fields[8].kind == FieldKind::Str);
    assert_eq!(fields[8].rules, [Rule::Email]);
    assert_eq!(fields[10].kind, FieldKind::Int);
    let category = <Category as Model>::FIELDS;
    assert_eq!(category[1].json_name, "displayName");
    assert_eq!(category[2].json_name, "parent");
    assert_eq!(category[0].kind, FieldKind::Str);
}

#[test]
fn json_shape_defaults_and_unknown_fields() {
    let mut record = post("Hi", "hi");
    record.id = 3;
    let text = json::to_string(&record).unwrap();
    assert!(!text.contains("secret"), "http(skip) never in JSON: {text}");
    assert!(text.contains("\"score\":0"), "read_only is written: {text}");

    let read: Post =
        json::from_str(r#"{"title":"T","slug":"t","secret":"x","score":99,"author_email":null}"#)
            .unwrap();
    assert_eq!(read.id, 0, "an absent u64 key is 0, for the sequencer");
    assert_eq!(read.views, 7, "db(default = 7)");
    assert_eq!(read.status, "draft", "db(default = \"draft\")");
    assert!(!read.published);
    assert_eq!(read.secret, "", "http(skip) is not read");
    assert_eq!(read.score, 0, "http(read_only) is not read");
    assert_eq!(read.link, None);

    let typo = json::from_str::<Post>(r#"{"title":"T","slug":"t","tittle":"x"}"#);
    assert!(typo.unwrap_err().to_string().contains("tittle"));
    let missing = json::from_str::<Post>(r#"{"title":"T"}"#);
    assert!(missing.unwrap_err().to_string().contains("slug"));

    let category: Category = json::from_str(r#"{"code":"c","displayName":"Cats"}"#).unwrap();
    assert_eq!(category.parent_code, None);
    assert_eq!(
        json::to_string(&category).unwrap(),
        r#"{"code":"c","displayName":"Cats","parent":null}"#
    );
}

#[test]
fn patch_is_a_merge_patch() {
    let patch: PostPatch =
        json::from_str(r#"{"title":"New","author_email":null,"score":5,"id":9}"#).unwrap();
    assert_eq!(patch.title.as_deref(), Some("New"));
    assert_eq!(
        patch.author_email,
        Some(None),
        "null on an Option sets None"
    );
    assert_eq!(patch.link, None, "absent is unchanged");
    assert_eq!(patch.score, None, "read_only is ignored on input");
    assert_eq!(<Post as Model>::patch_fields(&patch), [1, 8]);
    let mut record = post("Old", "old");
    record.author_email = Some("a@b.co".into());
    record.apply_patch(&patch);
    assert_eq!(
        (record.title.as_str(), &record.author_email),
        ("New", &None)
    );
    assert!(json::from_str::<PostPatch>(r#"{"nope":1}"#).is_err());
    assert_eq!(
        json::to_string(&patch).unwrap(),
        r#"{"title":"New","author_email":null}"#
    );

    let bytes = lithair::binary::to_vec(&patch);
    let back: PostPatch = lithair::binary::from_slice(&bytes).unwrap();
    assert_eq!(<Post as Model>::patch_fields(&back), [1, 8]);
    assert_eq!(back.author_email, Some(None));

    let mut kept = post("a", "b");
    let mut current = post("a", "b");
    current.secret = "hash".into();
    current.score = 42;
    kept.keep_protected(&current);
    assert_eq!((kept.secret.as_str(), kept.score), ("hash", 42));
}

#[test]
fn events_round_trip_through_the_alias() {
    let mut record = post("t", "s");
    record.id = 4;
    let events: Vec<PostEvent> = vec![
        ModelEvent::Created(record.clone()),
        ModelEvent::Deleted { id: Id::Int(4) },
        ModelEvent::Updated {
            id: Id::Int(4),
            patch: PostPatch {
                views: Some(12),
                ..PostPatch::default()
            },
        },
    ];
    for event in events {
        let bytes = lithair::binary::to_vec(&event);
        let back: PostEvent = lithair::binary::from_slice(&bytes).unwrap();
        match (&event, &back) {
            (ModelEvent::Created(a), ModelEvent::Created(b)) => {
                assert_eq!(a, b);
                assert_eq!(b.secret, "s3cret", "skipped fields are persisted");
            }
            (ModelEvent::Deleted { id: a }, ModelEvent::Deleted { id: b }) => assert_eq!(a, b),
            (ModelEvent::Updated { id: a, patch: p }, ModelEvent::Updated { id: b, patch: q }) => {
                assert_eq!((a, p.views), (b, q.views))
            }
            other => panic!("event changed shape: {other:?}"),
        }
    }
}

fn rejected(result: Result<impl std::fmt::Debug, WriteError>) -> Rejection {
    match result {
        Err(WriteError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn drive_directly(handle: &Handle) {
    let first = handle.create(post("First", "first")).unwrap();
    assert_eq!(first.id, 1);
    let dup = rejected(handle.create(post("Dup", "first")));
    assert!(matches!(dup, Rejection::Conflict { .. }), "{dup:?}");
    let long = rejected(handle.create(post("a title far too long for the rule", "x")));
    assert!(
        matches!(&long, Rejection::Invalid(e) if e[0].field == "title"),
        "{long:?}"
    );
    let mut bad = post("ok", "bad-rating");
    bad.rating = 6;
    let invalid = rejected(handle.create(bad));
    assert!(matches!(&invalid, Rejection::Invalid(e) if e[0].field == "rating"));
    let slug_change = PostPatch {
        slug: Some("other".into()),
        ..PostPatch::default()
    };
    let immutable = rejected(handle.update::<Post>(Id::Int(1), slug_change));
    assert!(matches!(immutable, Rejection::Invalid(_)), "{immutable:?}");
    let publish = PostPatch {
        published: Some(true),
        ..PostPatch::default()
    };
    let published = handle.update::<Post>(Id::Int(1), publish).unwrap();
    assert!(published.published);
    assert_eq!(published.secret, "s3cret");
    let (stored, _) = handle.get::<Post>(&Id::Int(1)).unwrap();
    assert_eq!(stored, published);

    let category = Category {
        code: "books".into(),
        display_name: "Books".into(),
        parent_code: None,
    };
    assert_eq!(handle.create(category).unwrap().code, "books");
    let short = Category {
        code: "x".into(),
        display_name: "X".into(),
        parent_code: None,
    };
    assert!(matches!(
        rejected(handle.create(short)),
        Rejection::Invalid(_)
    ));
}

#[test]
fn direct_and_http_crud_with_every_attribute() {
    let data = common::fresh_dir("derive-model", "crud");
    let (running, addr) = common::start(&app(), &data);
    drive_directly(&running.handle);

    let created = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"Second","slug":"second","secret":"ignored","score":50,"author_email":"me@example.com"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    assert_eq!(body["id"].as_u64(), Some(2));
    assert_eq!(
        body["score"].as_u64(),
        Some(0),
        "read_only ignored on input"
    );
    assert!(body["secret"].is_null() && !created.body.contains("secret"));
    assert_eq!(body["status"].as_str(), Some("draft"));
    assert_eq!(body["views"].as_u64(), Some(7));

    let cases = [
        (r#"{"title":"x","slug":"first"}"#, 409, "slug"),
        (r#"{"title":"","slug":"e1"}"#, 422, "title"),
        (
            r#"{"title":"x","slug":"e2","author_email":"nope"}"#,
            422,
            "author_email",
        ),
        (r#"{"title":"x","slug":"e3","link":"ftp:/x"}"#, 422, "link"),
        (r#"{"title":"x","slug":"e4","rating":9}"#, 422, "rating"),
        (r#"{"title":"x","slug":"e5","tittle":"y"}"#, 422, "tittle"),
    ];
    for (input, status, mention) in cases {
        let answer = request(addr, "POST", "/api/posts", "", input);
        assert_eq!(answer.status, status, "{input}: {}", answer.body);
        assert!(answer.body.contains(mention), "{input}: {}", answer.body);
    }

    let filtered = request(addr, "GET", "/api/posts?published=true", "", "").json();
    assert_eq!(filtered["total"].as_u64(), Some(1), "indexed filter");
    assert_eq!(filtered["data"][0]["slug"].as_str(), Some("first"));

    let patch = request(addr, "PATCH", "/api/posts/2", "", r#"{"slug":"changed"}"#);
    assert_eq!(patch.status, 422, "immutable on PATCH: {}", patch.body);
    let put = request(
        addr,
        "PUT",
        "/api/posts/2",
        "",
        r#"{"title":"Second","slug":"changed"}"#,
    );
    assert_eq!(put.status, 422, "immutable on PUT: {}", put.body);
    let put = request(
        addr,
        "PUT",
        "/api/posts/2",
        "",
        r#"{"title":"Replaced","slug":"second","score":1000}"#,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["title"].as_str(), Some("Replaced"));
    let merged = request(
        addr,
        "PATCH",
        "/api/posts/2",
        "",
        r#"{"author_email":null,"views":1}"#,
    );
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert!(merged.json()["author_email"].is_null());
    assert_eq!(merged.json()["views"].as_u64(), Some(1));
    let (second, _) = running.handle.get::<Post>(&Id::Int(2)).unwrap();
    assert_eq!(second.score, 0, "read_only kept on PUT");

    let category = request(
        addr,
        "POST",
        "/api/categories",
        "",
        r#"{"code":"games","displayName":"Games","parent":"books"}"#,
    );
    assert_eq!(category.status, 201, "{}", category.body);
    let shown = request(addr, "GET", "/api/categories/games", "", "").json();
    assert_eq!(shown["parent"].as_str(), Some("books"));
    let no_key = request(
        addr,
        "POST",
        "/api/categories",
        "",
        r#"{"displayName":"None"}"#,
    );
    assert_eq!(no_key.status, 422, "{}", no_key.body);
    for (path, body) in [
        ("/api/addresses", r#"{"street":"Main"}"#),
        ("/api/persons", r#"{"name":"Ada"}"#),
        ("/things", r#"{"label":"box"}"#),
    ] {
        let answer = request(addr, "POST", path, "", body);
        assert_eq!(answer.status, 201, "{path}: {}", answer.body);
    }
    let schema = request(addr, "GET", "/things/_schema", "", "").json();
    assert_eq!(schema["name"].as_str(), Some("Thing"));

    let digest = running.handle.engine().digest();
    running.stop().unwrap();
    let running = app().start(&serve_options(&data)).unwrap();
    assert_eq!(running.handle.engine().digest(), digest);
    let (second, _) = running.handle.get::<Post>(&Id::Int(2)).unwrap();
    assert_eq!(
        second.secret, "",
        "skip fields are persisted (empty: never written by HTTP)"
    );
    let (first, _) = running.handle.get::<Post>(&Id::Int(1)).unwrap();
    assert_eq!(first.secret, "s3cret", "skip fields survive a restart");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

// ----------------------------------------------------------------------------------------------
// Evolution: the same model before and after gaining defaulted fields.

mod v1 {
    use lithair::prelude::*;

    #[derive(Model, Clone, Debug, PartialEq)]
    #[model(name = "Note", path = "/api/notes")]
    pub struct Note {
        #[db(primary_key)]
        pub id: u64,
        pub text: String,
    }
}

mod v2 {
    use lithair::prelude::*;

    #[derive(Model, Clone, Debug, PartialEq)]
    #[model(name = "Note", path = "/api/notes")]
    pub struct Note {
        #[db(primary_key)]
        pub id: u64,
        pub text: String,
        #[db(default = 3)]
        pub priority: u32,
        #[db(default)]
        pub tags: Vec<String>,
        #[db(default = "open")]
        pub state: String,
    }
}

/// `v1::Note { id: 5, text: "hi" }` as the binary codec wrote it when this test was written:
/// struct framing `varint(body length)`, then `varint(5)` and the length-prefixed "hi".
const NOTE_V1_BYTES: [u8; 5] = [0x04, 0x05, 0x02, b'h', b'i'];

#[test]
fn golden_bytes_decode_with_new_defaulted_fields() {
    let old = v1::Note {
        id: 5,
        text: "hi".into(),
    };
    assert_eq!(
        lithair::binary::to_vec(&old),
        NOTE_V1_BYTES,
        "the format changed"
    );
    let new: v2::Note = lithair::binary::from_slice(&NOTE_V1_BYTES).unwrap();
    assert_eq!((new.id, new.text.as_str()), (5, "hi"));
    assert_eq!(
        (new.priority, new.tags.len(), new.state.as_str()),
        (3, 0, "open")
    );

    let event = lithair::binary::to_vec(&v1::NoteEvent::Updated {
        id: Id::Int(5),
        patch: v1::NotePatch {
            text: Some("edited".into()),
        },
    });
    match lithair::binary::from_slice::<v2::NoteEvent>(&event).unwrap() {
        ModelEvent::Updated { patch, .. } => {
            assert_eq!(patch.text.as_deref(), Some("edited"));
            assert_eq!((patch.priority, patch.state), (None, None));
        }
        other => panic!("wrong event {other:?}"),
    }
}

/// Set to a data directory, this test binary's `write_v1_log` writes the old log there: the
/// model registry is per process and both versions are named `Note`, so the old version writes
/// from a child process.
const V1_LOG_DIR_ENV: &str = "LITHAIR_TEST_NOTE_V1_LOG";

#[test]
fn write_v1_log() {
    let Some(dir) = std::env::var_os(V1_LOG_DIR_ENV) else {
        return; // only meaningful as the child of `an_old_log_replays_into_the_evolved_model`
    };
    let running = App::new("evolution")
        .model::<v1::Note>()
        .start(&serve_options(&PathBuf::from(dir)))
        .unwrap();
    for text in ["a", "b"] {
        let note = v1::Note {
            id: 0,
            text: text.into(),
        };
        running.handle.create(note).unwrap();
    }
    let patch = v1::NotePatch {
        text: Some("b2".into()),
    };
    running
        .handle
        .update::<v1::Note>(Id::Int(2), patch)
        .unwrap();
    running.stop().unwrap();
}

#[test]
fn an_old_log_replays_into_the_evolved_model() {
    let data = common::fresh_dir("derive-model", "evolution");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "write_v1_log", "--test-threads=1"])
        .env(V1_LOG_DIR_ENV, &data)
        .status()
        .unwrap();
    assert!(status.success(), "the v1 writer failed");

    let running = App::new("evolution")
        .model::<v2::Note>()
        .start(&serve_options(&data))
        .unwrap();
    let (first, _) = running
        .handle
        .get::<v2::Note>(&Id::Int(1))
        .expect("v1 record 1");
    assert_eq!((first.text.as_str(), first.priority), ("a", 3));
    let (second, _) = running
        .handle
        .get::<v2::Note>(&Id::Int(2))
        .expect("v1 record 2");
    assert_eq!(
        (second.text.as_str(), second.state.as_str()),
        ("b2", "open")
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
