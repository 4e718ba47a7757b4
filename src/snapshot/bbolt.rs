//! A small, read-only reader for bbolt database files (the format etcd keeps its data in).
//!
//! It exists so that etcd-rescue can inspect a snapshot or a `member/snap/db` without etcd's Go
//! tools and without trusting the file: every page id, element position, size and overflow count
//! is checked before use, each page is visited at most once per walk (so cycles and shared
//! subtrees cannot make a walk hang), tree depth is bounded, allocations are bounded by the file
//! size, and pages are read with `pread` through a small bounded cache instead of a memory map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

pub mod write;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const META_LEN: usize = 64;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const FREELIST: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;
/// The freelist page id written when the freelist is not persisted (etcd's `NoFreelistSync`).
const NO_FREELIST: u64 = u64::MAX;
/// The deepest a walk may go, counting nested buckets; real bbolt trees are a few levels deep.
const MAX_DEPTH: usize = 64;
/// The largest node (a page with its overflow pages) read into memory: far above what etcd
/// writes (a leaf holds at most a few values of at most a few MB), far below what would hurt.
const MAX_PAGE_BYTES: u64 = 128 << 20;
/// Total bytes the page cache may hold (two generations of half this size each).
const CACHE_BYTES: usize = 16 << 20;
/// How many problems a report lists before it only counts them (bbolt's and etcd's alike).
const MAX_PROBLEMS: usize = 100;

/// A list of problems that keeps the first [`MAX_PROBLEMS`] and only counts the rest, so that a
/// badly damaged file gives a report of bounded size. Used for page-level problems here and for
/// etcd-level ones in the reports.
#[derive(Debug)]
pub(crate) struct Capped<T> {
    items: Vec<T>,
    more: usize,
}

impl<T> Default for Capped<T> {
    fn default() -> Capped<T> {
        Capped {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<T> Capped<T> {
    /// Keeps `item`, or counts it once the list is full.
    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() < MAX_PROBLEMS {
            self.items.push(item);
        } else {
            self.more += 1;
        }
    }

    /// The first problem kept.
    pub(crate) fn first(&self) -> Option<&T> {
        self.items.first()
    }

    /// The problems kept, then `summary(n)` when `n` more were only counted.
    pub(crate) fn into_vec(self, summary: impl FnOnce(usize) -> T) -> Vec<T> {
        let mut items = self.items;
        if self.more > 0 {
            items.push(summary(self.more));
        }
        items
    }
}
const BAD_MAGIC: &str = "bad magic";
const CUT_SHORT: &str = "is cut short";
const BEYOND_END: &str = "lies beyond the end of the file";

/// One thing wrong with the file, and the page it was found on when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The page the problem was found on (`None` for problems about the whole file).
    pub page: Option<u64>,
    /// What is wrong, as a sentence without the page prefix.
    pub what: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(p) => write!(f, "page {p}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Why reading the database failed: the operating system refused, or the bytes are malformed.
#[derive(Debug)]
pub enum BoltError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file was read but is not a sound bbolt database.
    Corrupt(Corruption),
    /// The file was read and is no bbolt database at all (no magic where a
    /// db has one, or too short to hold its meta pages).
    NotADatabase(Corruption),
}

impl fmt::Display for BoltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoltError::Io(e) => write!(f, "cannot read the database: {e}"),
            BoltError::Corrupt(c) | BoltError::NotADatabase(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for BoltError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The I/O error is part of the message already; naming it again as the source would
        // print it twice in an anyhow chain.
        let _ = self;
        None
    }
}

impl From<std::io::Error> for BoltError {
    fn from(e: std::io::Error) -> Self {
        BoltError::Io(e)
    }
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, BoltError>;

fn not_a_database(what: impl Into<String>) -> BoltError {
    BoltError::NotADatabase(Corruption {
        page: None,
        what: what.into(),
    })
}

fn corrupt(page: Option<u64>, what: impl Into<String>) -> BoltError {
    BoltError::Corrupt(Corruption {
        page,
        what: what.into(),
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// FNV-1a, 64 bit: the checksum bbolt stores in its meta pages.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The contents of a valid meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Page size in bytes.
    pub page_size: u32,
    /// Meta flags (unused by bbolt today).
    pub flags: u32,
    /// Page id of the root bucket's tree.
    pub root: u64,
    /// The root bucket's sequence.
    pub sequence: u64,
    /// Page id of the freelist, or `u64::MAX` when the freelist is not stored.
    pub freelist: u64,
    /// The high-water mark: number of pages in use, so the database is `pgid * page_size` bytes.
    pub pgid: u64,
    /// The id of the transaction that wrote this meta page.
    pub txid: u64,
}

/// Parses and validates a meta page given the bytes from the start of its page.
fn parse_meta(page: &[u8]) -> std::result::Result<Meta, String> {
    let Some(m) = page.get(HEADER..HEADER + META_LEN) else {
        return Err(CUT_SHORT.into());
    };
    if u32_at(m, 0) != MAGIC {
        return Err(BAD_MAGIC.into());
    }
    let version = u32_at(m, 4);
    if version != VERSION {
        return Err(format!("has version {version}, expected {VERSION}"));
    }
    if fnv1a64(&m[..56]) != u64_at(m, 56) {
        return Err("checksum mismatch".into());
    }
    let meta = Meta {
        page_size: u32_at(m, 8),
        flags: u32_at(m, 12),
        root: u64_at(m, 16),
        sequence: u64_at(m, 24),
        freelist: u64_at(m, 32),
        pgid: u64_at(m, 40),
        txid: u64_at(m, 48),
    };
    if !meta.page_size.is_power_of_two() || !(512..=1 << 20).contains(&meta.page_size) {
        return Err(format!("has an invalid page size {}", meta.page_size));
    }
    if meta.root < 2 || meta.root >= meta.pgid {
        return Err(format!(
            "has root page {} outside the pages 2..{}",
            meta.root, meta.pgid
        ));
    }
    if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
        return Err(format!(
            "has freelist page {} outside the pages 2..{}",
            meta.freelist, meta.pgid
        ));
    }
    Ok(meta)
}

/// A bounded page cache: two generations, the old one dropped when the new one fills.
#[derive(Default)]
struct Cache {
    hot: HashMap<u64, Rc<Vec<u8>>>,
    cold: HashMap<u64, Rc<Vec<u8>>>,
    hot_bytes: usize,
}

impl Cache {
    fn get(&mut self, id: u64) -> Option<Rc<Vec<u8>>> {
        if let Some(p) = self.hot.get(&id) {
            return Some(Rc::clone(p));
        }
        let p = self.cold.remove(&id)?;
        self.insert(id, Rc::clone(&p));
        Some(p)
    }

    fn insert(&mut self, id: u64, page: Rc<Vec<u8>>) {
        if page.len() > CACHE_BYTES / 4 {
            return;
        }
        self.hot_bytes += page.len();
        if self.hot_bytes > CACHE_BYTES / 2 {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = page.len();
        }
        self.hot.insert(id, page);
    }
}

/// What a scan shows: a top-level bucket, then each of its own entries in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit<'a> {
    /// A top-level bucket starts.
    Bucket(&'a [u8]),
    /// An entry of the current top-level bucket; a nested bucket has `bucket` set and an empty value.
    Entry {
        /// The entry's key.
        key: &'a [u8],
        /// The entry's value (empty for a nested bucket).
        value: &'a [u8],
        /// Whether the entry is a nested bucket.
        bucket: bool,
    },
}

/// The visitor a tree walk calls with (key, value, is_bucket) for each leaf entry in key order;
/// a nested bucket's value is its raw header (root page id, sequence, then any inline page).
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8], bool) -> ControlFlow<()> + 'v;

/// An open bbolt database file.
pub struct Db {
    file: File,
    file_len: u64,
    meta: Meta,
    meta_problems: Vec<Corruption>,
    cache: RefCell<Cache>,
}

impl Db {
    /// Opens a bbolt file read-only and picks its current meta page, like bbolt does.
    pub fn open(path: &Path) -> Result<Db> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        if file_len == 0 {
            return Err(corrupt(None, "the file is empty"));
        }
        let mut head = vec![0u8; usize::try_from(file_len.min(4096)).unwrap_or(4096)];
        file.read_exact_at(&mut head, 0)?;
        let meta0 = parse_meta(&head);
        // Meta 1 sits one page in; without a valid meta 0 the page size is unknown, so try them all.
        let sizes: Vec<u64> = match &meta0 {
            Ok(m) => vec![u64::from(m.page_size)],
            Err(_) => std::iter::once(4096)
                .chain((9..=20).map(|s| 1u64 << s).filter(|&s| s != 4096))
                .collect(),
        };
        // Keep the most telling outcome: valid, else damaged, else bad magic, else beyond the end.
        let rank = |r: &std::result::Result<Meta, String>| match r {
            Ok(_) => 3,
            Err(e) if e == BAD_MAGIC => 1,
            Err(e) if e == BEYOND_END => 0,
            Err(_) => 2,
        };
        let mut meta1 = Err(BEYOND_END.to_string());
        for size in sizes {
            if size + (HEADER + META_LEN) as u64 > file_len {
                continue;
            }
            let mut buf = [0u8; HEADER + META_LEN];
            file.read_exact_at(&mut buf, size)?;
            let found = match parse_meta(&buf) {
                Ok(m) if u64::from(m.page_size) != size => Err(format!(
                    "says the page size is {} but lies at offset {size}",
                    m.page_size
                )),
                other => other,
            };
            if rank(&found) > rank(&meta1) {
                meta1 = found;
            }
            if meta1.is_ok() {
                break;
            }
        }
        let (meta, meta_problems) = match (meta0, meta1) {
            (Ok(a), Ok(b)) => (if b.txid > a.txid { b } else { a }, vec![]),
            (Ok(a), Err(e)) => (a, vec![meta_problem(1, &e)]),
            (Err(e), Ok(b)) => (b, vec![meta_problem(0, &e)]),
            (Err(a), Err(b)) if a == BAD_MAGIC || a == CUT_SHORT => {
                return Err(not_a_database(match (a.as_str(), b.as_str()) {
                    (CUT_SHORT, _) => {
                        format!("not a bbolt database: the file has only {file_len} bytes")
                    }
                    (_, BAD_MAGIC) => "not a bbolt database: bad magic at page 0 and page 1".into(),
                    (_, BEYOND_END) => "not a bbolt database: bad magic at page 0".into(),
                    _ => format!("not a bbolt database: bad magic at page 0, and meta page 1 {b}"),
                }));
            }
            (Err(a), Err(b)) => {
                return Err(corrupt(
                    None,
                    format!("not a usable bbolt database: meta page 0 {a}; meta page 1 {b}"),
                ));
            }
        };
        let db = Db {
            file,
            file_len,
            meta,
            meta_problems,
            cache: RefCell::default(),
        };
        match db.size() {
            Some(need) if need <= file_len => Ok(db),
            need => Err(corrupt(
                None,
                format!(
                    "the file is truncated: the database needs {} bytes but the file has {file_len}",
                    need.map_or_else(|| "more than 2^64".into(), |n| n.to_string())
                ),
            )),
        }
    }

    /// The meta page in use (the valid one with the higher transaction id).
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// Problems with the meta page that is not in use (empty when both are valid).
    pub fn meta_problems(&self) -> &[Corruption] {
        &self.meta_problems
    }

    /// The open file, so a second pass (the sha256) reads the very same file as the walk.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file's length when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The database size, `pgid * page_size` (what bbolt calls `tx.Size()`), if it fits in a u64.
    pub fn size(&self) -> Option<u64> {
        self.meta.pgid.checked_mul(u64::from(self.meta.page_size))
    }

    /// Reads page `id` with its overflow pages, checking it lies below the high-water mark.
    fn page(&self, id: u64) -> Result<Rc<Vec<u8>>> {
        if let Some(p) = self.cache.borrow_mut().get(id) {
            return Ok(p);
        }
        let pgid = self.meta.pgid;
        if id >= pgid {
            return Err(corrupt(
                Some(id),
                format!("out of bounds: the high-water mark is {pgid}"),
            ));
        }
        let ps = u64::from(self.meta.page_size);
        let mut buf = vec![0u8; self.meta.page_size as usize];
        self.file.read_exact_at(&mut buf, id * ps)?;
        let header_id = u64_at(&buf, 0);
        if header_id != id {
            return Err(corrupt(
                Some(id),
                format!("the page header says it is page {header_id}"),
            ));
        }
        let overflow = u64::from(u32_at(&buf, 12));
        if id + overflow >= pgid {
            return Err(corrupt(
                Some(id),
                format!("{overflow} overflow pages run past the high-water mark {pgid}"),
            ));
        }
        if overflow > 0 {
            // Bounded: (id + overflow) < pgid, pgid * page size <= file length, and the cap.
            let span = (overflow + 1) * ps;
            if span > MAX_PAGE_BYTES {
                return Err(corrupt(
                    Some(id),
                    format!(
                        "{overflow} overflow pages make a node of {span} bytes, more than the {} MiB \
                         this reader accepts (etcd values are a few MB at most)",
                        MAX_PAGE_BYTES >> 20
                    ),
                ));
            }
            let span = usize::try_from(span)
                .map_err(|_| corrupt(Some(id), "the page is too large for this machine"))?;
            buf.resize(span, 0);
            let first = self.meta.page_size as usize;
            self.file.read_exact_at(&mut buf[first..], (id + 1) * ps)?;
        }
        let page = Rc::new(buf);
        self.cache.borrow_mut().insert(id, Rc::clone(&page));
        Ok(page)
    }

    /// Calls `visit` with each entry of the bucket at `path` (names from the root) in key order;
    /// returns false when there is no such bucket. Nested buckets are shown, not entered.
    pub fn for_each(&self, path: &[&[u8]], visit: &mut Visitor<'_>) -> Result<bool> {
        let mut walker = Walker::new(self, false)?;
        let Some(at) = self.bucket_header(&mut walker, path)? else {
            return Ok(false);
        };
        walker.budget = Walker::budget(self);
        walker.walk(self.root_of(at.header())?, 0, visit)?;
        Ok(true)
    }

    /// The last key of the bucket at `path` (names from the root), in key
    /// order, reading only the pages down the tree's right edge: a few pages
    /// where a walk reads them all. `None` when the bucket is empty or missing.
    pub fn last_key(&self, path: &[&[u8]]) -> Result<Option<Vec<u8>>> {
        let mut walker = Walker::new(self, false)?;
        let Some(at) = self.bucket_header(&mut walker, path)? else {
            return Ok(None);
        };
        let mut root = self.root_of(at.header())?;
        for _ in 0..=MAX_DEPTH {
            let (page, at): (Rc<Vec<u8>>, u64) = match root {
                Root::Page(id) if id < 2 => return Err(corrupt(Some(id), "a tree points to a meta page")),
                Root::Page(id) => (self.page(id)?, id),
                Root::Inline(bytes, at) => (Rc::new(bytes.to_vec()), at),
            };
            if page.len() < HEADER {
                return Err(corrupt(Some(at), "an inline bucket shorter than a page header"));
            }
            let (flags, count) = (u16_at(&page, 8), usize::from(u16_at(&page, 10)));
            if count == 0 {
                return Ok(None);
            }
            if HEADER + count * ELEMENT > page.len() {
                return Err(corrupt(
                    Some(at),
                    format!("{count} elements do not fit in the page"),
                ));
            }
            let branch = flags & BRANCH != 0;
            let e = element(&page, count - 1, branch).map_err(|w| corrupt(Some(at), w))?;
            if branch {
                root = Root::Page(e.extra);
            } else if flags & LEAF != 0 {
                return Ok(Some(e.key.to_vec()));
            } else {
                return Err(corrupt(
                    Some(at),
                    format!("flags {flags:#x}: neither a branch nor a leaf"),
                ));
            }
        }
        Err(corrupt(
            None,
            format!("the tree is more than {MAX_DEPTH} levels deep"),
        ))
    }

    /// The header (value) of the bucket at `path`: `Ok(None)` when a bucket
    /// on the way is missing, [`BucketAt::Root`] for an empty path.
    fn bucket_header(&self, walker: &mut Walker<'_>, path: &[&[u8]]) -> Result<Option<BucketAt>> {
        let mut header: Option<Vec<u8>> = None;
        for name in path {
            let root = self.root_of(header.as_deref())?;
            let mut found = None;
            walker.budget = Walker::budget(self);
            walker.walk(root, 0, &mut |k: &[u8], v: &[u8], bucket: bool| {
                if k >= *name {
                    if k == *name && bucket {
                        found = Some(v.to_vec());
                    }
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            let Some(value) = found else { return Ok(None) };
            header = Some(value);
        }
        Ok(Some(header.map_or(BucketAt::Root, BucketAt::Header)))
    }

    /// The tree of the root bucket, or of the bucket whose header (value) is given.
    fn root_of<'a>(&self, header: Option<&'a [u8]>) -> Result<Root<'a>> {
        let at = self.meta.root;
        header.map_or(Ok(Root::Page(at)), |h| {
            bucket_root(h, at).map_err(|what| corrupt(Some(at), what))
        })
    }

    /// Walks every tree once, checking consistency like bbolt's `tx.Check`, and shows each
    /// top-level bucket followed by its own entries. Returns the problems found and the page
    /// counts; `Err` only on I/O.
    pub fn scan(&self, visit: &mut dyn FnMut(Visit<'_>)) -> Result<ScanOutcome> {
        let mut w = Walker::new(self, true)?;
        let mut tops: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
        w.walk(
            Root::Page(self.meta.root),
            0,
            &mut |k: &[u8], v: &[u8], b: bool| {
                tops.push((k.to_vec(), v.to_vec(), b));
                ControlFlow::Continue(())
            },
        )?;
        w.nested = true;
        for (name, value, is_bucket) in &tops {
            let shown = String::from_utf8_lossy(name);
            if !is_bucket {
                w.problem(
                    Some(self.meta.root),
                    format!("the root holds {shown:?}, which is not a bucket"),
                )?;
                continue;
            }
            visit(Visit::Bucket(name));
            match bucket_root(value, self.meta.root) {
                Ok(root) => {
                    w.walk(root, 1, &mut |key: &[u8], value: &[u8], bucket: bool| {
                        let value = if bucket { &[] } else { value };
                        visit(Visit::Entry { key, value, bucket });
                        ControlFlow::Continue(())
                    })?;
                }
                Err(e) => w.problem(Some(self.meta.root), format!("bucket {shown:?}: {e}"))?,
            }
        }
        w.check_freelist()?;
        let pages_in_use = w.seen.iter().map(|x| u64::from(x.count_ones())).sum();
        let problems = w.problems.map_or_else(Vec::new, |p| {
            p.into_vec(|n| Corruption {
                page: None,
                what: format!("and {n} more problems"),
            })
        });
        Ok(ScanOutcome {
            problems,
            pages_in_use,
            free_pages: self.meta.pgid.saturating_sub(pages_in_use),
        })
    }

    /// Runs the consistency check alone and returns the problems found (empty when sound).
    pub fn check(&self) -> Result<Vec<Corruption>> {
        Ok(self.scan(&mut |_| {})?.problems)
    }
}

/// What a full [`Db::scan`] found besides the entries it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Everything found wrong (empty when the file is sound).
    pub problems: Vec<Corruption>,
    /// Pages reached from the meta pages (both metas, the freelist and every tree page).
    pub pages_in_use: u64,
    /// Pages below the high-water mark that nothing reaches: free space a defrag would drop.
    pub free_pages: u64,
}

fn meta_problem(n: u64, e: &str) -> Corruption {
    Corruption {
        page: Some(n),
        what: format!("meta page {n} is invalid ({e}); the other one is used"),
    }
}

/// Where a tree starts: a page, or an inline bucket's page bytes and the page holding them.
#[derive(Clone, Copy)]
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8], u64),
}

/// Where a bucket path leads: the root bucket, or a nested bucket's header (its value).
enum BucketAt {
    Root,
    Header(Vec<u8>),
}

impl BucketAt {
    fn header(&self) -> Option<&[u8]> {
        match self {
            BucketAt::Root => None,
            BucketAt::Header(h) => Some(h),
        }
    }
}

/// Reads a bucket value found on page `at`: root page id and sequence, then for root 0 the inline page.
fn bucket_root(value: &[u8], at: u64) -> std::result::Result<Root<'_>, String> {
    if value.len() < 16 {
        return Err(format!(
            "the bucket header is {} bytes, expected at least 16",
            value.len()
        ));
    }
    match u64_at(value, 0) {
        0 => Ok(Root::Inline(&value[16..], at)),
        id => Ok(Root::Page(id)),
    }
}

/// One element of a page: its key, its value (leaf) and its flags (leaf) or child id (branch).
struct Element<'a> {
    key: &'a [u8],
    value: &'a [u8],
    extra: u64,
}

/// Decodes element `i` of a page, or says why its bytes lie outside the page.
fn element(page: &[u8], i: usize, branch: bool) -> std::result::Result<Element<'_>, String> {
    let at = HEADER + i * ELEMENT;
    let (pos, ksize, vsize, extra) = if branch {
        (u32_at(page, at), u32_at(page, at + 4), 0, u64_at(page, at + 8))
    } else {
        let (flags, pos) = (u32_at(page, at), u32_at(page, at + 4));
        (pos, u32_at(page, at + 8), u32_at(page, at + 12), u64::from(flags))
    };
    // Saturating: an absurd size saturates and then fails the bounds check below.
    let start = at.saturating_add(pos as usize);
    let kend = start.saturating_add(ksize as usize);
    let vend = kend.saturating_add(vsize as usize);
    if vend > page.len() {
        return Err(format!(
            "element {i}: bytes {start}..{vend} lie outside the page ({} bytes)",
            page.len()
        ));
    }
    Ok(Element {
        key: &page[start..kend],
        value: &page[kend..vend],
        extra,
    })
}

/// A depth-first walk that visits each page at most once.
struct Walker<'d> {
    db: &'d Db,
    /// One bit per page below the high-water mark: reached by this walk.
    seen: Vec<u64>,
    /// One bit per page: listed in the stored freelist (empty when there is none).
    freed: Vec<u64>,
    /// `Some` collects problems and skips bad subtrees; `None` fails on the first one.
    problems: Option<Capped<Corruption>>,
    /// Whether nested buckets are walked too (for checking); the visitor never sees their entries.
    nested: bool,
    /// Elements this walk may still visit. Each element of a sound file has its own 16 bytes in
    /// the file, so more visits than the file has room for means elements overlap (values shared
    /// between entries), which could otherwise make a walk take exponential time.
    budget: u64,
}

impl<'d> Walker<'d> {
    fn new(db: &'d Db, collect: bool) -> Result<Walker<'d>> {
        let pages = db.meta.pgid;
        let words = usize::try_from(pages.div_ceil(64)).map_err(|_| corrupt(None, "too many pages"))?;
        let mut w = Walker {
            db,
            seen: vec![0; words],
            freed: Vec::new(),
            problems: collect.then(Capped::default),
            nested: false,
            budget: Walker::budget(db),
        };
        w.mark(0, 2);
        let fl = db.meta.freelist;
        if collect && fl != NO_FREELIST {
            match db.page(fl) {
                Ok(p) if u16_at(&p, 8) == FREELIST => {
                    let span = p.len() as u64 / u64::from(db.meta.page_size);
                    if let Some(dup) = w.mark(fl, span) {
                        w.problem(Some(dup), "multiple references")?;
                    }
                    w.read_freelist(fl, &p)?;
                }
                Ok(p) => w.problem(
                    Some(fl),
                    format!("invalid type {:#x}, expected a freelist", u16_at(&p, 8)),
                )?,
                Err(BoltError::Corrupt(c) | BoltError::NotADatabase(c)) => w.problem(c.page, c.what)?,
                Err(e) => return Err(e),
            }
        }
        Ok(w)
    }

    /// What a sound file allows one walk to visit (see `budget`).
    fn budget(db: &Db) -> u64 {
        db.size().unwrap_or(u64::MAX) / ELEMENT as u64 + 64
    }

    /// Records the page ids a stored freelist page lists, reporting impossible or repeated ones.
    fn read_freelist(&mut self, fl: u64, page: &[u8]) -> Result<()> {
        let (mut count, mut start) = (u64::from(u16_at(page, 10)), HEADER);
        if count == 0xFFFF {
            // bbolt's overflow marker: the real count is the first u64.
            count = u64_at(page, HEADER);
            start += 8;
        }
        let room = (page.len().saturating_sub(start) / 8) as u64;
        if count > room {
            return self.problem(
                Some(fl),
                format!("the freelist says it holds {count} page ids but has room for {room}"),
            );
        }
        self.freed = vec![0; self.seen.len()];
        for i in 0..usize::try_from(count).unwrap_or(0) {
            let id = u64_at(page, start + i * 8);
            if id < 2 || id >= self.db.meta.pgid {
                self.problem(
                    Some(fl),
                    format!(
                        "freelist entry {i} is page {id}, outside the pages 2..{}",
                        self.db.meta.pgid
                    ),
                )?;
                continue;
            }
            let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
            if self.freed[word] & bit != 0 {
                self.problem(Some(id), "already freed")?;
            }
            self.freed[word] |= bit;
        }
        Ok(())
    }

    /// With a stored freelist, every page below the high-water mark must be reached or free, not both.
    fn check_freelist(&mut self) -> Result<()> {
        if self.freed.is_empty() {
            return Ok(());
        }
        for word in 0..self.seen.len() {
            let (seen, freed) = (self.seen[word], self.freed[word]);
            let bits = (seen & freed) | !(seen | freed);
            if bits == 0 {
                continue;
            }
            for bit in 0..64u64 {
                let id = word as u64 * 64 + bit;
                if id >= self.db.meta.pgid {
                    break;
                }
                if bits & (1 << bit) != 0 {
                    let what = if seen & (1 << bit) != 0 {
                        "reachable freed"
                    } else {
                        "unreachable unfreed"
                    };
                    self.problem(Some(id), what)?;
                }
            }
        }
        Ok(())
    }

    /// Records a problem (collecting) or fails with it.
    fn problem(&mut self, page: Option<u64>, what: impl Into<String>) -> Result<()> {
        match &mut self.problems {
            None => Err(corrupt(page, what)),
            Some(list) => {
                list.push(Corruption {
                    page,
                    what: what.into(),
                });
                Ok(())
            }
        }
    }

    /// Marks `span` pages from `id` as reached; returns the first one that already was.
    fn mark(&mut self, id: u64, span: u64) -> Option<u64> {
        let mut dup = None;
        for p in id..id + span {
            let (word, bit) = ((p / 64) as usize, 1u64 << (p % 64));
            let slot = self.seen.get_mut(word)?;
            if *slot & bit != 0 && dup.is_none() {
                dup = Some(p);
            }
            *slot |= bit;
        }
        dup
    }

    /// Walks one bucket's tree, stopping early when the visitor breaks.
    fn walk(&mut self, root: Root<'_>, depth: usize, visit: &mut Visitor<'_>) -> Result<()> {
        let _stopped_early = match root {
            Root::Page(id) => self.walk_page(id, None, None, depth, visit)?,
            Root::Inline(bytes, at) => self.walk_node(bytes, at, true, None, None, depth, visit)?,
        };
        Ok(())
    }

    fn walk_page(
        &mut self,
        id: u64,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<ControlFlow<()>> {
        if depth > MAX_DEPTH {
            self.problem(Some(id), format!("the tree is more than {MAX_DEPTH} levels deep"))?;
            return Ok(ControlFlow::Continue(()));
        }
        if id < 2 {
            self.problem(Some(id), "a tree points to a meta page")?;
            return Ok(ControlFlow::Continue(()));
        }
        let page = match self.db.page(id) {
            Ok(p) => p,
            Err(BoltError::Corrupt(c) | BoltError::NotADatabase(c)) => {
                self.problem(c.page, c.what)?;
                return Ok(ControlFlow::Continue(()));
            }
            Err(e) => return Err(e),
        };
        let span = page.len() as u64 / u64::from(self.db.meta.page_size);
        if let Some(dup) = self.mark(id, span) {
            self.problem(Some(dup), "multiple references")?;
            return Ok(ControlFlow::Continue(()));
        }
        self.walk_node(&page, id, false, lo, hi, depth, visit)
    }

    /// Checks one page's elements, then visits leaf entries or descends into children.
    #[allow(clippy::too_many_arguments)]
    fn walk_node(
        &mut self,
        page: &[u8],
        id: u64,
        inline: bool,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<ControlFlow<()>> {
        let (flags, count) = (u16_at(page, 8), usize::from(u16_at(page, 10)));
        let (id, inline) = (Some(id), if inline { "inline bucket: " } else { "" });
        if self.budget == 0 {
            return Ok(ControlFlow::Continue(()));
        }
        if depth > MAX_DEPTH {
            self.problem(
                id,
                format!("{inline}the tree is more than {MAX_DEPTH} levels deep"),
            )?;
            return Ok(ControlFlow::Continue(()));
        }
        let branch = match flags {
            BRANCH if inline.is_empty() => true,
            LEAF => false,
            _ => {
                self.problem(
                    id,
                    format!("{inline}invalid page type {flags:#x}, expected branch or leaf"),
                )?;
                return Ok(ControlFlow::Continue(()));
            }
        };
        if page.len() < HEADER + count * ELEMENT || (branch && count == 0) {
            self.problem(
                id,
                format!("{inline}{count} elements do not fit a {} byte page", page.len()),
            )?;
            return Ok(ControlFlow::Continue(()));
        }
        if self.budget <= count as u64 {
            self.budget = 0;
            self.problem(
                id,
                format!(
                    "{inline}the walk met more elements than the file has room for: entries share \
                     their bytes; stopped here"
                ),
            )?;
            return Ok(ControlFlow::Continue(()));
        }
        self.budget -= count as u64;
        // Validate every element and the key order first, so children can be given key bounds.
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            let bad = match element(page, i, branch) {
                Err(e) => Some(e),
                Ok(e) if prev.is_some_and(|p| e.key <= p) => Some(format!("element {i}: keys out of order")),
                Ok(e) if lo.is_some_and(|l| e.key < l) || hi.is_some_and(|h| e.key >= h) => Some(format!(
                    "element {i}: key outside the range its parent branch gives"
                )),
                Ok(e) => {
                    prev = Some(e.key);
                    None
                }
            };
            if let Some(what) = bad {
                self.problem(id, format!("{inline}{what}"))?;
                return Ok(ControlFlow::Continue(()));
            }
        }
        for i in 0..count {
            let Ok(e) = element(page, i, branch) else {
                break;
            };
            let flow = if branch {
                let next = (i + 1 < count).then(|| element(page, i + 1, true).ok()).flatten();
                let child_hi = next.map(|n| n.key).or(hi);
                self.walk_page(e.extra, Some(e.key), child_hi, depth + 1, visit)?
            } else if e.extra & u64::from(BUCKET_LEAF) != 0 {
                let flow = visit(e.key, e.value, true);
                if self.nested {
                    match bucket_root(e.value, id.unwrap_or_default()) {
                        Ok(root) => {
                            self.walk(root, depth + 1, &mut |_: &[u8], _: &[u8], _: bool| {
                                ControlFlow::Continue(())
                            })?;
                        }
                        Err(what) => self.problem(id, format!("{inline}element {i}: {what}"))?,
                    }
                }
                flow
            } else {
                visit(e.key, e.value, false)
            };
            if flow.is_break() {
                return Ok(flow);
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
pub(crate) mod testdb {
    //! Builds tiny bbolt files by hand (512-byte pages) for tests.

    use super::fnv1a64;

    /// The page size of hand-built files.
    pub(crate) const PS: usize = 512;

    /// A leaf entry: key, value, and whether the value is a bucket.
    pub(crate) type Entry<'a> = (&'a [u8], &'a [u8], bool);

    fn header(id: u64, flags: u16, count: usize) -> Vec<u8> {
        let mut p = id.to_le_bytes().to_vec();
        p.extend(flags.to_le_bytes());
        p.extend(u16::try_from(count).unwrap().to_le_bytes());
        p.extend(0u32.to_le_bytes());
        p
    }

    fn u32le(n: usize) -> [u8; 4] {
        u32::try_from(n).unwrap().to_le_bytes()
    }

    /// Serializes a leaf node (no padding), as bbolt lays it out.
    pub(crate) fn leaf(id: u64, entries: &[Entry<'_>]) -> Vec<u8> {
        let (mut p, mut data) = (header(id, 0x02, entries.len()), Vec::new());
        for (i, (k, v, bucket)) in entries.iter().enumerate() {
            p.extend(u32::from(*bucket).to_le_bytes());
            p.extend(u32le((entries.len() - i) * 16 + data.len()));
            p.extend(u32le(k.len()));
            p.extend(u32le(v.len()));
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        p.extend(data);
        p
    }

    /// Serializes a branch node (no padding): each child's first key and page id.
    pub(crate) fn branch(id: u64, children: &[(&[u8], u64)]) -> Vec<u8> {
        let (mut p, mut data) = (header(id, 0x01, children.len()), Vec::new());
        for (i, (k, child)) in children.iter().enumerate() {
            p.extend(u32le((children.len() - i) * 16 + data.len()));
            p.extend(u32le(k.len()));
            p.extend(child.to_le_bytes());
            data.extend_from_slice(k);
        }
        p.extend(data);
        p
    }

    /// Pads a node to whole pages and sets its overflow count.
    pub(crate) fn page(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.resize(bytes.len().div_ceil(PS).max(1) * PS, 0);
        let overflow = u32::try_from(bytes.len() / PS - 1).unwrap();
        bytes[12..16].copy_from_slice(&overflow.to_le_bytes());
        bytes
    }

    /// A bucket value whose tree starts at page `root`.
    pub(crate) fn bucket(root: u64) -> Vec<u8> {
        [root.to_le_bytes(), 0u64.to_le_bytes()].concat()
    }

    /// An inline bucket value holding `entries`.
    pub(crate) fn inline(entries: &[Entry<'_>]) -> Vec<u8> {
        [bucket(0), leaf(0, entries)].concat()
    }

    /// A meta page.
    pub(crate) fn meta(id: u64, root: u64, pgid: u64, txid: u64) -> Vec<u8> {
        let mut m = header(id, 0x04, 0);
        m.extend(0xED0C_DAEDu32.to_le_bytes());
        m.extend(2u32.to_le_bytes());
        m.extend(u32le(PS));
        m.extend(0u32.to_le_bytes());
        for n in [root, 0, u64::MAX, pgid, txid] {
            m.extend(n.to_le_bytes());
        }
        let sum = fnv1a64(&m[16..]);
        m.extend(sum.to_le_bytes());
        page(m)
    }

    /// A whole file: two meta pages (txid 1 and 2) then `pages`, which start at page 2.
    pub(crate) fn file(root: u64, pages: &[Vec<u8>]) -> Vec<u8> {
        let pgid = 2 + u64::try_from(pages.iter().map(|p| p.len() / PS).sum::<usize>()).unwrap();
        let mut f = [meta(0, root, pgid, 1), meta(1, root, pgid, 2)].concat();
        for p in pages {
            f.extend(p);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testdb::{PS, branch, bucket, file, inline, leaf, meta, page};
    use super::*;
    use std::io::Write as _;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>, bool)>;

    fn entries(db: &Db, path: &[&[u8]]) -> Result<Entries> {
        let mut out = Vec::new();
        db.for_each(path, &mut |k: &[u8], v: &[u8], b: bool| {
            out.push((k.to_vec(), v.to_vec(), b));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn problems(bytes: &[u8]) -> Vec<String> {
        let f = write(bytes);
        Db::open(f.path())
            .unwrap()
            .check()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A database with a page bucket "a" split over a branch and two leaves (one value overflows),
    /// an inline bucket "b" holding a nested inline bucket, and an empty page bucket "c".
    fn sample() -> Vec<u8> {
        let big = vec![7u8; 1000];
        file(
            2,
            &[
                page(leaf(
                    2,
                    &[
                        (b"a", &bucket(3), true),
                        (
                            b"b",
                            &inline(&[(b"x", b"1", false), (b"y", &inline(&[(b"z", b"2", false)]), true)]),
                            true,
                        ),
                        (b"c", &bucket(8), true),
                    ],
                )),
                page(branch(3, &[(b"k1", 4), (b"k3", 7)])),
                page(leaf(4, &[(b"k1", b"v1", false), (b"k2", &big, false)])),
                page(leaf(7, &[(b"k3", b"v3", false)])),
                page(leaf(8, &[])),
            ],
        )
    }

    /// Replaces the page with id `id` (pages are PS bytes, metas included) in a built file.
    fn put_page(f: &mut [u8], id: usize, bytes: &[u8]) {
        f[id * PS..id * PS + bytes.len()].copy_from_slice(bytes);
    }

    /// FNV-1a 64 gives the published test vectors, so meta checksums are computed like bbolt's.
    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// A well-formed file iterates in key order through branches, overflow pages and inline buckets.
    #[test]
    fn iterates_buckets_in_order() {
        let f = write(&sample());
        let db = Db::open(f.path()).unwrap();
        assert_eq!(db.meta().txid, 2);
        assert_eq!(db.size(), Some(9 * PS as u64));
        let top: Vec<_> = entries(&db, &[])
            .unwrap()
            .into_iter()
            .map(|(k, _, b)| (k, b))
            .collect();
        assert_eq!(
            top,
            [
                (b"a".to_vec(), true),
                (b"b".to_vec(), true),
                (b"c".to_vec(), true)
            ]
        );
        let a = entries(&db, &[b"a"]).unwrap();
        let keys: Vec<_> = a.iter().map(|e| e.0.clone()).collect();
        assert_eq!(keys, [b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()]);
        assert_eq!(a[1].1, vec![7u8; 1000]);
        let b = entries(&db, &[b"b"]).unwrap();
        assert_eq!(
            (b[0].0.as_slice(), b[0].1.as_slice(), b[1].2),
            (&b"x"[..], &b"1"[..], true)
        );
        assert_eq!(entries(&db, &[b"b", b"y"]).unwrap()[0].1, b"2");
        assert!(entries(&db, &[b"c"]).unwrap().is_empty());
        assert!(
            !db.for_each(&[b"nope"], &mut |_: &[u8], _: &[u8], _: bool| {
                ControlFlow::Continue(())
            })
            .unwrap()
        );
        assert!(db.check().unwrap().is_empty());
    }

    /// A scan shows each top-level bucket then its own entries, nested buckets with empty values.
    #[test]
    fn scan_shows_buckets_then_entries() {
        let f = write(&sample());
        let db = Db::open(f.path()).unwrap();
        let mut seen = Vec::new();
        let problems = db
            .scan(&mut |v| match v {
                Visit::Bucket(n) => seen.push(format!("[{}]", String::from_utf8_lossy(n))),
                Visit::Entry { key, value, bucket } => {
                    seen.push(format!(
                        "{}={}{}",
                        String::from_utf8_lossy(key),
                        value.len(),
                        if bucket { "b" } else { "" }
                    ));
                }
            })
            .unwrap();
        assert!(problems.problems.is_empty(), "{problems:?}");
        assert_eq!((problems.pages_in_use, problems.free_pages), (9, 0));
        assert_eq!(
            seen,
            ["[a]", "k1=2", "k2=1000", "k3=2", "[b]", "x=1", "y=0b", "[c]"]
        );
    }

    /// An invalid meta page 0 with the higher txid is skipped for meta 1, and reported.
    #[test]
    fn falls_back_to_the_other_meta() {
        let mut f = sample();
        put_page(&mut f, 0, &meta(0, 2, 9, 9));
        f[16 + 48] ^= 1; // txid byte: checksum now wrong
        let t = write(&f);
        let db = Db::open(t.path()).unwrap();
        assert_eq!(db.meta().txid, 2);
        assert_eq!(
            db.meta_problems()[0].to_string(),
            "page 0: meta page 0 is invalid (checksum mismatch); the other one is used"
        );
        // With a valid meta 0 of a higher txid, that one is used.
        put_page(&mut f, 0, &meta(0, 2, 9, 9));
        let t = write(&f);
        assert_eq!(Db::open(t.path()).unwrap().meta().txid, 9);
    }

    /// Empty, foreign, truncated and half-damaged files fail to open with a clear sentence.
    #[test]
    fn open_errors_are_clear() {
        let msg = |b: &[u8]| match Db::open(write(b).path()) {
            Err(BoltError::Corrupt(c) | BoltError::NotADatabase(c)) => c.to_string(),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => "opened".into(),
        };
        assert_eq!(msg(b""), "the file is empty");
        assert_eq!(
            msg(&[b'x'; 5000]),
            "not a bbolt database: bad magic at page 0 and page 1"
        );
        assert_eq!(msg(b"hello"), "not a bbolt database: the file has only 5 bytes");
        assert_eq!(
            msg(&[b'x'; 3000]),
            "not a bbolt database: bad magic at page 0 and page 1"
        );
        let f = sample();
        assert_eq!(
            msg(&f[..3000]),
            "the file is truncated: the database needs 4608 bytes but the file has 3000"
        );
        let mut g = f.clone();
        g[16 + 56] ^= 1;
        g[PS + 20] ^= 1;
        assert_eq!(
            msg(&g),
            "not a usable bbolt database: meta page 0 checksum mismatch; meta page 1 has version 3, expected 2"
        );
    }

    /// A branch pointing past the high-water mark, to a shared page, or to itself is reported by page.
    #[test]
    fn check_reports_bad_references() {
        let mut f = sample();
        put_page(&mut f, 3, &page(branch(3, &[(b"k1", 4), (b"k3", 99)])));
        assert_eq!(problems(&f), ["page 99: out of bounds: the high-water mark is 9"]);
        put_page(&mut f, 3, &page(branch(3, &[(b"k1", 4), (b"k3", 4)])));
        assert_eq!(problems(&f), ["page 4: multiple references"]);
        put_page(&mut f, 3, &page(branch(3, &[(b"k1", 3)])));
        assert_eq!(problems(&f), ["page 3: multiple references"]);
        put_page(&mut f, 3, &page(branch(3, &[(b"k1", 4), (b"k3", 5)])));
        assert_eq!(
            problems(&f),
            ["page 5: the page header says it is page 506381209866536711"]
        );
    }

    /// Unsorted keys, keys outside the parent's range, bad positions and bad page types are found.
    #[test]
    fn check_reports_bad_pages() {
        let mut f = sample();
        put_page(
            &mut f,
            7,
            &page(leaf(7, &[(b"k5", b"", false), (b"k4", b"", false)])),
        );
        assert_eq!(problems(&f), ["page 7: element 1: keys out of order"]);
        put_page(&mut f, 7, &page(leaf(7, &[(b"k0", b"", false)])));
        assert_eq!(
            problems(&f),
            ["page 7: element 0: key outside the range its parent branch gives"]
        );
        let mut bad = page(leaf(7, &[(b"k3", b"v3", false)]));
        bad[20..24].copy_from_slice(&600u32.to_le_bytes());
        put_page(&mut f, 7, &bad);
        assert_eq!(
            problems(&f),
            ["page 7: element 0: bytes 616..620 lie outside the page (512 bytes)"]
        );
        bad[8] = 0x10;
        put_page(&mut f, 7, &bad);
        assert_eq!(
            problems(&f),
            ["page 7: invalid page type 0x10, expected branch or leaf"]
        );
        bad[8..12].copy_from_slice(&[2, 0, 0xff, 0xff]);
        put_page(&mut f, 7, &bad);
        assert_eq!(
            problems(&f),
            ["page 7: 65535 elements do not fit a 512 byte page"]
        );
        put_page(&mut f, 4, &page(leaf(4, &[(b"k1", b"v1", false)]))[..16]);
        f[4 * PS + 12] = 200;
        assert!(
            problems(&f).contains(&"page 4: 200 overflow pages run past the high-water mark 9".to_string())
        );
    }

    /// Iteration fails on the first problem with the page named, instead of skipping data.
    #[test]
    fn for_each_fails_fast_naming_the_page() {
        let mut f = sample();
        put_page(
            &mut f,
            7,
            &page(leaf(7, &[(b"k5", b"", false), (b"k4", b"", false)])),
        );
        let t = write(&f);
        let err = entries(&Db::open(t.path()).unwrap(), &[b"a"]).unwrap_err();
        assert_eq!(err.to_string(), "page 7: element 1: keys out of order");
    }

    /// A chain of branch pages deeper than the limit stops with a problem, not a stack overflow.
    #[test]
    fn depth_is_bounded() {
        let n = MAX_DEPTH as u64 + 5;
        let mut pages = vec![page(leaf(2, &[(b"a", &bucket(3), true)]))];
        pages.extend((3..3 + n).map(|id| page(branch(id, &[(b"k", id + 1)]))));
        pages.push(page(leaf(3 + n, &[(b"k", b"v", false)])));
        let p = problems(&file(2, &pages));
        assert_eq!(
            p,
            [format!(
                "page {}: the tree is more than 64 levels deep",
                3 + MAX_DEPTH as u64
            )]
        );
    }

    /// Sets both metas' freelist page (checksums kept valid) and appends `pages` after page 8.
    fn with_freelist(ids: &[u64], extra_pages: u64) -> Vec<u8> {
        let mut f = sample();
        let mut fl = 9u64.to_le_bytes().to_vec();
        fl.extend(FREELIST.to_le_bytes());
        fl.extend(u16::try_from(ids.len()).unwrap().to_le_bytes());
        fl.extend(0u32.to_le_bytes());
        for id in ids {
            fl.extend(id.to_le_bytes());
        }
        f.extend(page(fl));
        f.resize(f.len() + usize::try_from(extra_pages).unwrap() * PS, 0);
        let pgid = 10 + extra_pages;
        for m in [0, PS] {
            f[m + 48..m + 56].copy_from_slice(&9u64.to_le_bytes());
            f[m + 56..m + 64].copy_from_slice(&pgid.to_le_bytes());
            let sum = fnv1a64(&f[m + 16..m + 72]);
            f[m + 72..m + 80].copy_from_slice(&sum.to_le_bytes());
        }
        f
    }

    /// With a stored freelist, every page must be reached or free, not both, and freed once.
    #[test]
    fn check_uses_a_stored_freelist() {
        assert!(problems(&with_freelist(&[10], 1)).is_empty());
        assert_eq!(problems(&with_freelist(&[], 1)), ["page 10: unreachable unfreed"]);
        assert_eq!(problems(&with_freelist(&[4, 10], 1)), ["page 4: reachable freed"]);
        assert_eq!(problems(&with_freelist(&[10, 10], 1)), ["page 10: already freed"]);
        assert_eq!(
            problems(&with_freelist(&[10, 77], 1)),
            ["page 9: freelist entry 1 is page 77, outside the pages 2..11"]
        );
        let f = write(&with_freelist(&[10], 1));
        let outcome = Db::open(f.path()).unwrap().scan(&mut |_| {}).unwrap();
        assert_eq!((outcome.pages_in_use, outcome.free_pages), (10, 1));
    }

    /// A node claiming more overflow pages than any etcd value needs is refused before it is read.
    #[test]
    fn huge_nodes_are_refused_before_reading() {
        let mut f = sample();
        let pages = u32::try_from(MAX_PAGE_BYTES / PS as u64).unwrap();
        f[8 * PS + 12..8 * PS + 16].copy_from_slice(&pages.to_le_bytes());
        // Make the file long enough that the overflow pages lie below the high-water mark.
        let pgid = 9 + u64::from(pages);
        f.resize(usize::try_from(pgid).unwrap() * PS, 0);
        for m in [0, PS] {
            f[m + 56..m + 64].copy_from_slice(&pgid.to_le_bytes());
            let sum = fnv1a64(&f[m + 16..m + 72]);
            f[m + 72..m + 80].copy_from_slice(&sum.to_le_bytes());
        }
        let p = problems(&f);
        assert!(
            p[0].starts_with("page 8: 262144 overflow pages make a node of"),
            "{p:?}"
        );
    }

    /// An inline page whose `n` bucket entries all share one value, `inner`: keys are suffixes
    /// of one byte string, each followed by the same bytes.
    fn shared_value_node(n: u8, inner: &[u8]) -> Vec<u8> {
        let n16 = usize::from(n);
        let mut p = 0u64.to_le_bytes().to_vec();
        p.extend(LEAF.to_le_bytes());
        p.extend(u16::from(n).to_le_bytes());
        p.extend(0u32.to_le_bytes());
        let text = HEADER + n16 * ELEMENT;
        for j in 0..n16 {
            let at = HEADER + j * ELEMENT;
            let start = text + (n16 - 1 - j);
            p.extend(BUCKET_LEAF.to_le_bytes());
            p.extend(u32::try_from(start - at).unwrap().to_le_bytes());
            p.extend(u32::try_from(j + 1).unwrap().to_le_bytes());
            p.extend(u32::try_from(inner.len()).unwrap().to_le_bytes());
        }
        p.extend((1..=n).rev());
        p.extend(inner);
        p
    }

    /// Entries sharing their value bytes, nested, cannot make a walk take exponential time, and
    /// inline buckets nested past the depth limit stop with a problem instead of a stack overflow.
    #[test]
    fn overlapping_and_deep_inline_buckets_are_bounded() {
        let mut value = inline(&[(b"k", b"v", false)]);
        for _ in 0..12 {
            value = [bucket(0), shared_value_node(20, &value)].concat();
        }
        let f = file(2, &[page(leaf(2, &[(b"a", &value, true)]))]);
        let started = std::time::Instant::now();
        let p = problems(&f);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(p.iter().any(|m| m.contains("entries share their bytes")), "{p:?}");

        let mut value = inline(&[(b"k", b"v", false)]);
        for _ in 0..MAX_DEPTH + 10 {
            value = inline(&[(b"n", &value, true)]);
        }
        let f = file(2, &[page(leaf(2, &[(b"a", &value, true)]))]);
        let p = problems(&f);
        assert!(p.iter().any(|m| m.contains("more than 64 levels deep")), "{p:?}");
        let t = write(&f);
        let db = Db::open(t.path()).unwrap();
        assert!(entries(&db, &[b"a"]).is_ok());
    }

    /// The page cache stays within its byte budget whatever is inserted.
    #[test]
    fn cache_is_bounded() {
        let mut c = Cache::default();
        for id in 0..10_000 {
            c.insert(id, Rc::new(vec![0; 4096]));
            let held: usize = c.hot.values().chain(c.cold.values()).map(|p| p.len()).sum();
            assert!(held <= CACHE_BYTES);
        }
        assert!(c.get(9_999).is_some());
        assert!(c.get(0).is_none());
    }
}
