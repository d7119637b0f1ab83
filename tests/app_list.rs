//! What a list request costs as a collection grows, counted rather than timed: how many sort
//! keys a page reads (`Model::field_value` calls, each a `Value` and, for a text field, a
//! string copy made under the read lock), and that the bounded page selection gives exactly
//! the page a stable sort of every selected record gives.

use std::cell::Cell;

use lithair::app::model::{compare_values, sorted_page};
use lithair::app::schema::{parse_list_query, ListQuery};
use lithair::app::{Collection, FieldKind, FieldSpec, Id, Model, ModelEvent};
use lithair::json::{self, Value};
use lithair::prelude::*;

thread_local! {
    /// Calls of `Row::field_value` on this thread so far (tests run side by side on threads
    /// of their own, and a page is read on the caller's thread).
    static KEY_READS: Cell<usize> = const { Cell::new(0) };
}

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
struct Row {
    #[json(default)]
    id: u64,
    name: String,
    rank: u64,
    flag: bool,
}

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
struct RowPatch {
    name: Option<String>,
}

const ROW_FIELDS: [FieldSpec; 4] = [
    FieldSpec {
        primary_key: true,
        ..FieldSpec::plain("id", FieldKind::UInt)
    },
    FieldSpec::plain("name", FieldKind::Str),
    FieldSpec::plain("rank", FieldKind::UInt),
    FieldSpec {
        indexed: true,
        ..FieldSpec::plain("flag", FieldKind::Bool)
    },
];

impl Model for Row {
    type Patch = RowPatch;
    const NAME: &'static str = "Row";
    const PATH: &'static str = "/api/rows";
    const FIELDS: &'static [FieldSpec] = &ROW_FIELDS;
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
        KEY_READS.set(KEY_READS.get() + 1);
        match index {
            0 => json::to_value(&self.id),
            1 => json::to_value(&self.name),
            2 => json::to_value(&self.rank),
            _ => json::to_value(&self.flag),
        }
        .unwrap_or(Value::Null)
    }

    fn apply_patch(&mut self, patch: &RowPatch) {
        if let Some(name) = &patch.name {
            self.name = name.clone();
        }
    }

    fn patch_fields(patch: &RowPatch) -> Vec<usize> {
        if patch.name.is_some() {
            vec![1]
        } else {
            Vec::new()
        }
    }
}

/// `count` rows with many ties in `rank` and `name` (so stability shows), ids 1..=count.
fn rows(count: u64) -> Collection<Row> {
    let mut collection = Collection::new();
    for id in 1..=count {
        // A scrambled but deterministic order, unrelated to the ids.
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        collection.apply(&ModelEvent::Created(Row {
            id,
            name: format!("name-{}", mixed % 97),
            rank: mixed % 13,
            flag: mixed % 3 == 0,
        }));
    }
    collection
}

fn query(pairs: &[(&str, &str)]) -> ListQuery {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_list_query(&pairs, &ROW_FIELDS).expect("a valid list query")
}

/// The page as the specification defines it: every selected record, stably sorted, then
/// skipped and taken.
fn reference(collection: &Collection<Row>, query: &ListQuery) -> (usize, Vec<Row>) {
    let mut selected: Vec<Row> = collection
        .select(&query.filters)
        .into_iter()
        .map(|record| record.value.clone())
        .collect();
    if let Some((field, descending)) = query.sort {
        selected.sort_by(|a, b| {
            let order = compare_values(&a.field_value(field), &b.field_value(field));
            if descending {
                order.reverse()
            } else {
                order
            }
        });
    }
    let total = selected.len();
    let page = selected
        .into_iter()
        .skip(query.skip)
        .take(query.take)
        .collect();
    (total, page)
}

/// `field_value` calls made by `run`.
fn count_key_reads(run: impl FnOnce()) -> usize {
    let before = KEY_READS.get();
    run();
    KEY_READS.get() - before
}

#[test]
fn a_sorted_page_reads_each_key_once() {
    const ROWS: u64 = 20_000;
    let collection = rows(ROWS);
    let sorted = query(&[("sort", "-name"), ("take", "20")]);
    let filtered = query(&[("sort", "rank"), ("take", "20"), ("rank", ">=1")]);
    let mut pages = Vec::new();
    // One read per record for the sort key, plus one per record and filter. Sorting the whole
    // selection read two keys per comparison: 322,546 here.
    let reads = count_key_reads(|| {
        pages.push(sorted_page(collection.select(&sorted.filters), &sorted));
    });
    assert!(reads <= ROWS as usize, "{reads} key reads for {ROWS} rows");
    let reads = count_key_reads(|| pages.push(collection.page(&sorted)));
    assert!(reads <= ROWS as usize, "{reads} key reads for {ROWS} rows");
    let reads = count_key_reads(|| pages.push(collection.page(&filtered)));
    assert!(
        reads <= 2 * ROWS as usize,
        "{reads} key reads for {ROWS} rows"
    );
    let reads = count_key_reads(|| pages.push(collection.page(&query(&[("take", "20")]))));
    assert_eq!(reads, 0, "an unsorted, unfiltered page reads no field");
    assert!(pages
        .iter()
        .all(|(total, page)| *total > 0 && page.len() == 20));
}

#[test]
fn bounded_pages_are_the_pages_of_a_stable_sort() {
    let collection = rows(300);
    let sorts = [
        None,
        Some("name"),
        Some("-name"),
        Some("rank"),
        Some("-rank"),
    ];
    let filters: [&[(&str, &str)]; 4] = [
        &[],
        &[("flag", "true")],
        &[("flag", "false"), ("rank", "<7")],
        &[("name", "~name-1")],
    ];
    let pages = [
        ("0", "0"),
        ("0", "1"),
        ("0", "20"),
        ("5", "20"),
        ("95", "10"),
        ("280", "50"),
        ("299", "1000"),
        ("300", "5"),
        ("100000", "5"),
        ("18446744073709551615", "1000"),
    ];
    for sort in sorts {
        for filter in filters {
            for (skip, take) in pages {
                let mut pairs = vec![("skip", skip), ("take", take)];
                pairs.extend(sort.map(|sort| ("sort", sort)));
                pairs.extend_from_slice(filter);
                let query = query(&pairs);
                let expected = reference(&collection, &query);
                assert_eq!(collection.page(&query), expected, "{pairs:?}");
                let selected = collection.select(&query.filters);
                assert_eq!(sorted_page(selected, &query), expected, "{pairs:?}");
            }
        }
    }
}
