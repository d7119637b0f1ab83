//! A hand-written `Model` implementation for `Post`, in exactly the shape `#[derive(Model)]`
//! generates, shared by the tests that exercise the app layer on its own (app_crud, live).

use lithair::app::{FieldKind, FieldSpec, Id, Model, Rule};
use lithair::json::{self, Value};
use lithair::prelude::*;

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
pub struct Post {
    #[json(default)]
    pub id: u64,
    pub title: String,
    pub slug: String,
    #[json(default)]
    #[binary(default)]
    pub published: bool,
    #[json(default)]
    pub views: u64,
}

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
pub struct PostPatch {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub published: Option<bool>,
    pub views: Option<u64>,
}

pub const TITLE_RULES: [Rule; 1] = [Rule::Len {
    min: 1,
    max: Some(20),
}];

pub const POST_FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        primary_key: true,
        ..FieldSpec::plain("id", FieldKind::UInt)
    },
    FieldSpec {
        rules: &TITLE_RULES,
        ..FieldSpec::plain("title", FieldKind::Str)
    },
    FieldSpec {
        unique: true,
        immutable: true,
        ..FieldSpec::plain("slug", FieldKind::Str)
    },
    FieldSpec {
        indexed: true,
        has_default: true,
        ..FieldSpec::plain("published", FieldKind::Bool)
    },
    FieldSpec::plain("views", FieldKind::UInt),
];

impl Model for Post {
    type Patch = PostPatch;
    const NAME: &'static str = "Post";
    const PATH: &'static str = "/api/posts";
    const FIELDS: &'static [FieldSpec] = &POST_FIELDS;
    const PRIMARY_KEY: usize = 0;

    fn id(&self) -> Id {
        Id::Int(self.id)
    }

    fn set_id(&mut self, id: Id) {
        if let Id::Int(id) = id {
            self.id = id;
        }
    }

    fn field_value(&self, index: usize) -> Value {
        match index {
            0 => json::to_value(&self.id),
            1 => json::to_value(&self.title),
            2 => json::to_value(&self.slug),
            3 => json::to_value(&self.published),
            _ => json::to_value(&self.views),
        }
        .unwrap_or(Value::Null)
    }

    fn apply_patch(&mut self, patch: &PostPatch) {
        if let Some(v) = &patch.title {
            self.title = v.clone();
        }
        if let Some(v) = &patch.slug {
            self.slug = v.clone();
        }
        if let Some(v) = patch.published {
            self.published = v;
        }
        if let Some(v) = patch.views {
            self.views = v;
        }
    }

    fn patch_fields(patch: &PostPatch) -> Vec<usize> {
        let mut fields = Vec::new();
        if patch.title.is_some() {
            fields.push(1);
        }
        if patch.slug.is_some() {
            fields.push(2);
        }
        if patch.published.is_some() {
            fields.push(3);
        }
        if patch.views.is_some() {
            fields.push(4);
        }
        fields
    }
}
