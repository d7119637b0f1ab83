//! What requests cost as the state or a command grows, counted rather than timed: how many
//! field values (`Model::field_value` calls, each a JSON round trip and, for a text field, a
//! string copy) a list page reads under the read lock and a command's unique checks read on
//! the sequencer; and that the bounded page selection gives exactly the page a stable sort of
//! every selected record gives.

use std::cell::Cell;

use lithair::app::model::{compare_values, sorted_page};
use lithair::app::schema::{parse_list_query, ListQuery};
use lithair::app::state::register;
use lithair::app::{
    AppState, Collection, FieldKind, FieldSpec, Id, Model, ModelEvent, Rejection, Tx,
};
use lithair::engine::Context;
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
    #[json(default)]
    code: Option<String>,
}

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
struct RowPatch {
    name: Option<String>,
}

const ROW_FIELDS: [FieldSpec; 5] = [
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
    FieldSpec {
        unique: true,
        optional: true,
        ..FieldSpec::plain("code", FieldKind::Str)
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
            3 => json::to_value(&self.flag),
            _ => json::to_value(&self.code),
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
        collection.apply(ModelEvent::Created(Row {
            id,
            name: format!("name-{}", mixed % 97),
            rank: mixed % 13,
            flag: mixed % 3 == 0,
            code: None,
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

/// A transaction over `state` as the sequencer would open it.
fn tx(state: &AppState) -> Tx<'_> {
    let context = Context {
        first_index: 1,
        timestamp_ms: 0,
        request_id: 1,
    };
    Tx::new(state, context)
}

fn coded(id: u64, code: &str) -> Row {
    Row {
        id,
        code: Some(code.to_string()),
        ..Row::default()
    }
}

#[test]
fn a_command_checks_each_unique_value_against_its_own_records_once() {
    const ROWS: u64 = 3_000;
    register::<Row>();
    let state = AppState::with_models(&[Row::NAME]);
    let mut tx = tx(&state);
    // A few reads per record staged, whatever the command staged before. Reading every staged
    // record for each unique check read 4,501,500 values here (k^2 / 2).
    let reads = count_key_reads(|| {
        for id in 1..=ROWS {
            tx.create(coded(id, &format!("c{id}")))
                .expect("distinct codes");
        }
    });
    assert!(
        reads <= 10 * ROWS as usize,
        "{reads} reads for {ROWS} creates"
    );
    for id in 1..=ROWS {
        assert_eq!(tx.version::<Row>(&Id::Int(id)), 1);
    }
}

#[test]
fn a_command_still_refuses_a_value_its_own_records_hold() {
    register::<Row>();
    let mut state = AppState::with_models(&[Row::NAME]);
    lithair::engine::State::apply(
        &mut state,
        &lithair::app::AppEvent::new(&ModelEvent::Created(coded(1, "held"))),
    );
    let conflict =
        |result: Result<Row, Rejection>| matches!(result, Err(Rejection::Conflict { .. }));
    let mut tx = tx(&state);
    // Committed holder.
    assert!(conflict(tx.create(coded(2, "held"))));
    // Staged holder, and the same value after it moved away and after it was deleted.
    tx.create(coded(3, "a")).expect("free");
    assert!(conflict(tx.create(coded(4, "a"))));
    tx.replace(&Id::Int(3), coded(3, "b"))
        .expect("its own record");
    tx.create(coded(4, "a")).expect("3 let go of a");
    assert!(conflict(tx.replace(&Id::Int(3), coded(3, "a"))));
    tx.delete::<Row>(&Id::Int(4)).expect("staged");
    tx.replace(&Id::Int(3), coded(3, "a")).expect("4 is gone");
    assert!(conflict(tx.create(coded(5, "a"))));
    // The committed holder let go of its value within the command.
    tx.replace(&Id::Int(1), coded(1, "other"))
        .expect("its own record");
    tx.create(coded(2, "held")).expect("1 let go of held");
    assert!(conflict(tx.create(coded(6, "held"))));
    assert_eq!(tx.version::<Row>(&Id::Int(1)), 2);
    assert_eq!(tx.version::<Row>(&Id::Int(3)), 3);
    // Created then deleted within the command: absent afterwards, so version 0.
    assert_eq!(tx.version::<Row>(&Id::Int(4)), 0);
    assert_eq!(tx.version::<Row>(&Id::Int(9)), 0);
}

/// A snapshot of a large app state is encoded and decoded a record at a time: its spilled
/// encoding is the plain encoding byte for byte (so the on-disk format is unchanged), no piece
/// handed to the file is much larger than `SPILL_PIECE_BYTES`, and decoding holds a couple of
/// `UNSPILL_PIECE_BYTES` of it, whatever the state's size (before, the whole state was encoded
/// into one buffer and decoded from the whole body).
#[test]
fn a_large_state_is_snapshotted_and_loaded_in_bounded_pieces() {
    use lithair::binary::{Spill, Unspill, SPILL_PIECE_BYTES, UNSPILL_PIECE_BYTES};
    use lithair::engine::{State, Tracked};
    const ROWS: u64 = 150_000;
    register::<Row>();
    let mut state = AppState::with_models(&[Row::NAME]);
    for record in rows(ROWS).iter() {
        let event = ModelEvent::Created(record.value.clone());
        state.apply(&lithair::app::state::AppEvent::new(&event));
    }
    let plain = lithair::binary::to_vec(&state);
    assert!(plain.len() > 2 * SPILL_PIECE_BYTES, "{} bytes", plain.len());
    let mut measure = Spill::measure();
    state.encode_spilled(&mut measure);
    let measured = measure.finish().expect("measures");
    let (mut spilled, mut largest) = (Vec::new(), 0);
    let mut sink = |piece: &[u8]| {
        largest = largest.max(piece.len());
        spilled.extend_from_slice(piece);
        Ok(())
    };
    let mut emit = Spill::emit(&measured, &mut sink);
    state.encode_spilled(&mut emit);
    emit.finish().expect("emits");
    assert!(spilled == plain, "the spilled encoding is the plain one");
    assert!(
        largest <= SPILL_PIECE_BYTES + 1024,
        "a piece of {largest} bytes"
    );
    // The whole snapshot body (state, versions, window) decodes back to the same state, read
    // a part at a time: at most a couple of pieces of it are held at once (before, the state
    // was decoded from the whole body in memory).
    let tracked = Tracked::new(state, 7, 16);
    let mut body = Vec::new();
    tracked.encode_snapshot(&mut body);
    let mut at = 0;
    let mut source = |window: &mut Vec<u8>, want: usize| {
        window.extend_from_slice(&body[at..at + want]);
        at += want;
        Ok(())
    };
    let mut input = Unspill::new(body.len() as u64, &mut source);
    let back = Tracked::<AppState>::decode_snapshot_spilled(&mut input, 16).expect("decodes");
    let held = input.held_bytes_max();
    input.finish().expect("whole");
    assert!(
        held <= 2 * UNSPILL_PIECE_BYTES,
        "{held} bytes held to decode"
    );
    assert_eq!(back.applied_index, 7);
    assert!(lithair::binary::to_vec(&back.state) == plain);
}

/// A clone of a collection (the sequencer's copy of the state, taken when a node is admitted
/// to lead) shares every record with the original instead of copying it, and a change to
/// either copy copies only the record it changes; each copy's indexes answer for that copy.
#[test]
fn a_clone_shares_every_record_until_one_copy_changes_it() {
    let count = 5_000;
    let original = rows(count);
    let mut copy = original.clone();
    let record = |collection: &Collection<Row>, id: u64| {
        collection
            .get(&Id::Int(id))
            .map(|record| record as *const lithair::app::Record<Row>)
    };
    for id in 1..=count {
        assert_eq!(
            record(&original, id),
            record(&copy, id),
            "record {id} was copied"
        );
    }
    let deleted = original.get(&Id::Int(8)).expect("row 8").value.clone();
    copy.apply(ModelEvent::Updated {
        id: Id::Int(7),
        patch: RowPatch {
            name: Some("seven".into()),
        },
    });
    copy.apply(ModelEvent::Deleted { id: Id::Int(8) });
    copy.apply(ModelEvent::Created(Row {
        id: count + 1,
        name: "new".into(),
        rank: 1,
        flag: !deleted.flag,
        code: Some("only-in-the-copy".into()),
    }));
    for id in 1..=count {
        match id {
            7 => assert_ne!(record(&original, id), record(&copy, id)),
            8 => assert_eq!(record(&copy, id), None),
            _ => assert_eq!(record(&original, id), record(&copy, id), "record {id}"),
        }
    }
    assert_ne!(
        original.get(&Id::Int(7)).expect("row 7").value.name,
        "seven"
    );
    assert_eq!(copy.get(&Id::Int(7)).expect("row 7").value.name, "seven");
    assert_eq!(
        (original.len(), copy.len()),
        (count as usize, count as usize)
    );
    // The equality index of each copy: row 8 only in the original's, the new row only in the
    // copy's.
    let ids = |collection: &Collection<Row>, flag: bool| -> Vec<u64> {
        let filter = query(&[("flag", if flag { "true" } else { "false" })]);
        let selected = collection.select(&filter.filters);
        selected.iter().map(|record| record.value.id).collect()
    };
    assert!(ids(&original, deleted.flag).contains(&8));
    assert!(!ids(&copy, deleted.flag).contains(&8));
    assert!(ids(&copy, !deleted.flag).contains(&(count + 1)));
    assert!(!ids(&original, !deleted.flag).contains(&(count + 1)));
    // And the unique index.
    let unique = |collection: &Collection<Row>| {
        collection
            .find_unique(4, &Value::String("only-in-the-copy".into()))
            .cloned()
    };
    assert_eq!(unique(&copy), Some(Id::Int(count + 1)));
    assert_eq!(unique(&original), None);
}

/// One step of [`copies_and_their_indexes_stay_independent`]: which copy it acts on (modulo
/// the number of copies) and what it does there.
#[derive(Clone, Debug)]
enum Step {
    /// Keep a clone of a copy as a new copy.
    Fork(usize),
    Create {
        copy: usize,
        id: u64,
        flag: bool,
        code: Option<u8>,
    },
    Rename {
        copy: usize,
        id: u64,
    },
    Replace {
        copy: usize,
        id: u64,
        flag: bool,
        code: Option<u8>,
    },
    Delete {
        copy: usize,
        id: u64,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let id = 1..40u64;
    let code = proptest::option::of(0..12u8);
    prop_oneof![
        1 => any::<usize>().prop_map(Step::Fork),
        4 => (any::<usize>(), id.clone(), any::<bool>(), code.clone())
            .prop_map(|(copy, id, flag, code)| Step::Create { copy, id, flag, code }),
        2 => (any::<usize>(), id.clone()).prop_map(|(copy, id)| Step::Rename { copy, id }),
        2 => (any::<usize>(), id.clone(), any::<bool>(), code)
            .prop_map(|(copy, id, flag, code)| Step::Replace { copy, id, flag, code }),
        2 => (any::<usize>(), id).prop_map(|(copy, id)| Step::Delete { copy, id }),
    ]
}

/// Checks a collection against the rows it should hold: records in id order, the equality
/// index of `flag` and the unique index of `code`.
fn check_against(collection: &Collection<Row>, rows: &std::collections::BTreeMap<u64, Row>) {
    let held: Vec<Row> = collection
        .iter()
        .map(|record| record.value.clone())
        .collect();
    let expected: Vec<Row> = rows.values().cloned().collect();
    assert_eq!(held, expected, "records");
    for flag in [false, true] {
        let filter = query(&[("flag", if flag { "true" } else { "false" })]);
        let ids: Vec<u64> = collection
            .select(&filter.filters)
            .iter()
            .map(|record| record.value.id)
            .collect();
        let expected: Vec<u64> = rows
            .values()
            .filter(|r| r.flag == flag)
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, expected, "equality index of flag={flag}");
    }
    for code in 0..12u8 {
        let text = format!("code-{code}");
        let holder = rows
            .values()
            .find(|row| row.code.as_deref() == Some(text.as_str()))
            .map(|row| Id::Int(row.id));
        assert_eq!(
            collection.find_unique(4, &Value::String(text)).cloned(),
            holder,
            "unique index of code-{code}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Copies of a collection (the sequencer's copy is a clone of the committed one) taken at
    /// any point and changed apart share what neither changed and never see each other's
    /// changes: records, equality index and unique index alike.
    #[test]
    fn copies_and_their_indexes_stay_independent(
        steps in proptest::collection::vec(step(), 1..300)
    ) {
        use std::collections::BTreeMap;
        const COPIES_MAX: usize = 6;
        let mut copies: Vec<(Collection<Row>, BTreeMap<u64, Row>)> =
            vec![(Collection::new(), BTreeMap::new())];
        let code_text = |code: Option<u8>| code.map(|code| format!("code-{code}"));
        let code_free = |rows: &BTreeMap<u64, Row>, code: &Option<String>, id: u64| {
            code.is_none() || rows.values().all(|row| row.id == id || &row.code != code)
        };
        for step in steps {
            let count = copies.len();
            match step {
                Step::Fork(from) => {
                    if count < COPIES_MAX {
                        let copy = copies[from % count].clone();
                        copies.push(copy);
                    }
                }
                Step::Create { copy, id, flag, code } => {
                    let (collection, rows) = &mut copies[copy % count];
                    let code = code_text(code);
                    if !rows.contains_key(&id) && code_free(rows, &code, id) {
                        let row = Row { id, name: format!("row-{id}"), rank: id % 5, flag, code };
                        collection.apply(ModelEvent::Created(row.clone()));
                        rows.insert(id, row);
                    }
                }
                Step::Rename { copy, id } => {
                    let (collection, rows) = &mut copies[copy % count];
                    if let Some(row) = rows.get_mut(&id) {
                        row.name.push('+');
                        let patch = RowPatch { name: Some(row.name.clone()) };
                        collection.apply(ModelEvent::Updated { id: Id::Int(id), patch });
                    }
                }
                Step::Replace { copy, id, flag, code } => {
                    let (collection, rows) = &mut copies[copy % count];
                    let code = code_text(code);
                    if rows.contains_key(&id) && code_free(rows, &code, id) {
                        let row = Row { id, name: format!("replaced-{id}"), rank: 0, flag, code };
                        collection.apply(ModelEvent::Replaced(row.clone()));
                        rows.insert(id, row);
                    }
                }
                Step::Delete { copy, id } => {
                    let (collection, rows) = &mut copies[copy % count];
                    if rows.remove(&id).is_some() {
                        collection.apply(ModelEvent::Deleted { id: Id::Int(id) });
                    }
                }
            }
        }
        for (collection, rows) in &copies {
            check_against(collection, rows);
        }
    }
}
