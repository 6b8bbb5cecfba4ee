//! The write cursor and `drain` against a model: moves in both directions,
//! removals and replacements under the cursor, ranges drained in part.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::{Rng, TestDb};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Where the model's cursor is, as `CursorMut` documents it.
#[derive(Clone, Debug)]
enum At {
    Unset,
    On(Vec<u8>),
    Gap(Vec<u8>),
    AfterEnd,
    BeforeStart,
}

fn after(m: &Model, at: &At) -> Option<Vec<u8>> {
    match at {
        At::Unset | At::BeforeStart => m.keys().next().cloned(),
        At::On(k) | At::Gap(k) => m
            .range::<[u8], _>((Bound::Excluded(&k[..]), Bound::Unbounded))
            .next()
            .map(|(k, _)| k.clone()),
        At::AfterEnd => None,
    }
}

fn before(m: &Model, at: &At) -> Option<Vec<u8>> {
    match at {
        At::Unset | At::AfterEnd => m.keys().next_back().cloned(),
        At::On(k) | At::Gap(k) => m
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&k[..])))
            .next_back()
            .map(|(k, _)| k.clone()),
        At::BeforeStart => None,
    }
}

fn key(rng: &mut Rng, ps: usize) -> Vec<u8> {
    let mut k = format!("{:04}", rng.below(500)).into_bytes();
    if rng.below(12) == 0 {
        k.resize(ps / 4 + 1 + rng.below(300) as usize, b'~');
    }
    k
}

fn value(rng: &mut Rng, ps: usize) -> Vec<u8> {
    let len = match rng.below(8) {
        0 => ps * 2 + rng.below(ps as u64 * 8) as usize,
        1 => ps / 3 + rng.below(ps as u64) as usize,
        _ => rng.below(40) as usize,
    };
    rng.bytes(len)
}

#[test]
fn a_write_cursor_matches_a_model() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(u64::from(ps) + 3);
        let t = TestDb::new(ps);
        let ps = ps as usize;
        let mut model = Model::new();
        for round in 0..10 {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..150 {
                    let (k, v) = (key(&mut rng, ps), value(&mut rng, ps));
                    tab.insert(&k, &v).unwrap();
                    model.insert(k, v);
                }
                let mut c = tab.cursor_mut();
                let mut at = At::Unset;
                for step in 0..600 {
                    let got: Option<(Vec<u8>, Vec<u8>)>;
                    let want: Option<Vec<u8>>;
                    let op = rng.below(16);
                    // `last` and `prev` look towards the front.
                    let backwards = op == 1 || (7..=9).contains(&op);
                    match op {
                        0 => {
                            want = model.keys().next().cloned();
                            got = c.first().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
                        }
                        1 => {
                            want = model.keys().next_back().cloned();
                            got = c.last().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
                        }
                        2 => {
                            let probe = key(&mut rng, ps);
                            want = model.range(probe.clone()..).next().map(|(k, _)| k.clone());
                            got = c
                                .seek(&probe)
                                .unwrap()
                                .map(|(k, v)| (k.to_vec(), v.to_vec()));
                        }
                        3..=6 => {
                            want = after(&model, &at);
                            got = c.next().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
                        }
                        7..=9 => {
                            want = before(&model, &at);
                            got = c.prev().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
                        }
                        10..=12 => {
                            let on = matches!(at, At::On(_));
                            assert_eq!(c.remove_current().unwrap(), on, "step {step}");
                            if let At::On(k) = &at {
                                model.remove(k);
                                at = At::Gap(k.clone());
                            }
                            assert!(c.current().unwrap().is_none());
                            continue;
                        }
                        _ => {
                            let v = value(&mut rng, ps);
                            let on = matches!(at, At::On(_));
                            assert_eq!(c.replace_current(&v).unwrap(), on);
                            if let At::On(k) = &at {
                                model.insert(k.clone(), v.clone());
                                let cur = c.current().unwrap().unwrap();
                                assert_eq!((cur.0, cur.1), (&k[..], &v[..]));
                            }
                            continue;
                        }
                    }
                    let want = want.map(|k| {
                        let v = model[&k].clone();
                        (k, v)
                    });
                    assert_eq!(got, want, "round {round} step {step}");
                    // The model's place follows the cursor's: on what it
                    // found, or past the end it looked towards.
                    at = match &got {
                        Some((k, _)) => At::On(k.clone()),
                        None if backwards => At::BeforeStart,
                        None => At::AfterEnd,
                    };
                }
                drop(c);
                assert_eq!(tab.len(), model.len() as u64);
            }
            w.commit().unwrap();
            let r = t.db().begin_read().unwrap();
            let tab = r.open_table("t").unwrap();
            let got: Model = tab
                .iter()
                .unwrap()
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect();
            assert_eq!(got, model);
            drop(r);
            t.db().check().unwrap();
        }
    }
}

#[test]
fn drain_takes_what_it_gives_and_leaves_the_rest() {
    let mut rng = Rng(9);
    let t = TestDb::new(512);
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for _ in 0..3000 {
            let (k, v) = (key(&mut rng, 512), value(&mut rng, 512));
            tab.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        for _ in 0..30 {
            let (a, b) = (key(&mut rng, 512), key(&mut rng, 512));
            let take = rng.below(120) as usize;
            let want: Vec<(Vec<u8>, Vec<u8>)> = if a < b {
                model
                    .range(a.clone()..b.clone())
                    .take(take)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let got: Vec<(Vec<u8>, Vec<u8>)> = tab
                .drain(&a[..]..&b[..])
                .take(take)
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(got, want);
            for (k, _) in &want {
                model.remove(k);
            }
            assert_eq!(tab.len(), model.len() as u64);
        }
        // A whole drain, in reverse-free order, empties the range.
        let all: Vec<_> = tab.drain(..).map(|e| e.unwrap()).collect();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        assert!(tab.is_empty());
    }
    w.commit().unwrap();
    t.db().check().unwrap();
}
