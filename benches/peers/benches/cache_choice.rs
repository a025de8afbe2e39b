//! Which cache should hold verified tokens? The same workload on three
//! candidates: `quick_cache` (sharded CLOCK-Pro, weighted), `moka` (sync,
//! TinyLFU), and a hand-written map sharded 16 ways behind `std` mutexes.
//!
//! Keys are ~700-byte tokens (`Box<[u8]>`), values an `Arc` plus a few
//! integers, as in tokenguard. Measured: a hit (the hot path), a miss, an
//! insert into a full cache (eviction), and hits from 2 threads at once.
//!
//!     cargo bench --manifest-path benches/peers/Cargo.toml --bench cache_choice

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[derive(Clone)]
struct Entry {
    _token: Arc<[u8; 64]>,
    _valid_until: i64,
    _fingerprint: u64,
}

fn entry() -> Entry {
    Entry { _token: Arc::new([0; 64]), _valid_until: 1, _fingerprint: 2 }
}

fn token(i: usize) -> Box<[u8]> {
    let mut t = format!("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{i:08}.").into_bytes();
    t.resize(700, b'x');
    t.into_boxed_slice()
}

trait Candidate: Send + Sync {
    fn get(&self, k: &[u8]) -> Option<Entry>;
    fn insert(&self, k: Box<[u8]>, v: Entry);
}

struct Quick(quick_cache::sync::Cache<Box<[u8]>, Entry>);
impl Candidate for Quick {
    fn get(&self, k: &[u8]) -> Option<Entry> {
        self.0.get(k)
    }
    fn insert(&self, k: Box<[u8]>, v: Entry) {
        self.0.insert(k, v)
    }
}

struct Moka(moka::sync::Cache<Box<[u8]>, Entry>);
impl Candidate for Moka {
    fn get(&self, k: &[u8]) -> Option<Entry> {
        self.0.get(k)
    }
    fn insert(&self, k: Box<[u8]>, v: Entry) {
        self.0.insert(k, v)
    }
}

/// 16 shards; a full shard drops an arbitrary entry.
struct Sharded {
    shards: Vec<Mutex<HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>>>,
    hasher: foldhash::fast::RandomState,
    per_shard: usize,
}
impl Sharded {
    fn new(cap: usize) -> Self {
        Self {
            shards: (0..16).map(|_| Mutex::new(HashMap::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            per_shard: cap / 16,
        }
    }
    fn shard(&self, k: &[u8]) -> &Mutex<HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>> {
        let mut h = self.hasher.build_hasher();
        k.hash(&mut h);
        &self.shards[(std::hash::Hasher::finish(&h) % 16) as usize]
    }
}
impl Candidate for Sharded {
    fn get(&self, k: &[u8]) -> Option<Entry> {
        self.shard(k).lock().unwrap().get(k).cloned()
    }
    fn insert(&self, k: Box<[u8]>, v: Entry) {
        let mut shard = self.shard(&k).lock().unwrap();
        if shard.len() >= self.per_shard {
            let victim = shard.keys().next().cloned();
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(k, v);
    }
}

const CAP: usize = 10_000;

fn candidates() -> Vec<(&'static str, Arc<dyn Candidate>)> {
    vec![
        ("quick_cache", Arc::new(Quick(quick_cache::sync::Cache::new(CAP)))),
        ("moka", Arc::new(Moka(moka::sync::Cache::new(CAP as u64)))),
        ("sharded_mutex_map", Arc::new(Sharded::new(CAP))),
    ]
}

fn bench(c: &mut Criterion) {
    let keys: Vec<Box<[u8]>> = (0..CAP).map(token).collect();
    let fresh: Vec<Box<[u8]>> = (CAP..CAP * 3).map(token).collect();
    let mut g = c.benchmark_group("cache_choice");
    for (name, cache) in candidates() {
        for k in &keys {
            cache.insert(k.clone(), entry());
        }
        let hot = &keys[..64];
        let mut i = 0;
        g.bench_function(format!("{name}/hit"), |b| {
            b.iter(|| {
                i = (i + 1) % hot.len();
                black_box(cache.get(&hot[i]))
            })
        });
        g.bench_function(format!("{name}/miss"), |b| {
            b.iter(|| {
                i = (i + 1) % fresh.len();
                black_box(cache.get(&fresh[i]))
            })
        });
        g.bench_function(format!("{name}/insert_full"), |b| {
            b.iter(|| {
                i = (i + 1) % fresh.len();
                cache.insert(fresh[i].clone(), entry())
            })
        });
        g.bench_function(format!("{name}/hit_2_threads"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2 {
                        let cache = cache.clone();
                        s.spawn(move || {
                            for n in 0..iters {
                                black_box(cache.get(&hot[(n as usize + t * 7) % hot.len()]));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
