//! A small bbolt writer: one write transaction on an existing file, as bbolt
//! commits one, so etcd-rescue can change a restored db (a bumped revision,
//! the restore's membership) without etcd's Go tools.
//!
//! Copy-on-write, like bbolt: a changed node is written to pages that nothing
//! the current meta page reaches uses (pages from the stored freelist, or new
//! pages past the high-water mark), every node on the way up to the root is
//! rewritten the same way, the pages of the replaced nodes are freed, and
//! only then, after an fsync, the meta page of the next transaction id (the
//! slot of the older meta) is written with its checksum and fsynced. A crash
//! before that leaves the file as it was; a torn meta page fails its checksum
//! and bbolt (and [`super::Db`]) use the other one.
//!
//! Nodes are split as bbolt's `node.split` does (at half a page, at least two
//! keys each), a node larger than a page gets overflow pages, a bucket that
//! fits a quarter page without nested buckets is written inline, and the
//! freelist is written back (with overflow pages, and the 0xFFFF count
//! marker beyond 65,534 ids) when the file stores one. A file without a
//! stored freelist (etcd opens its db with `NoFreelistSync`) keeps none:
//! new pages then come from past the high-water mark, and bbolt finds the
//! freed ones by its own scan at open.
//!
//! Only top-level buckets are written (etcd's layout); nested buckets are
//! kept as they are. The reader checks every file this writes in the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use super::{
    BRANCH, BUCKET_LEAF, Db, ELEMENT, FREELIST, HEADER, LEAF, MAGIC, MAX_DEPTH, META_LEN, Meta, NO_FREELIST,
    Result, VERSION, bucket_root, corrupt, element, fnv1a64, u16_at, u64_at,
};
use crate::host::fs as hostfs;

/// bbolt's `minKeysPerPage`: a split leaves at least this many keys on each side.
const MIN_KEYS: usize = 2;
/// The meta page's flag.
const META_PAGE: u16 = 0x04;
/// The size of a bucket header (root page id, sequence) before an inline page.
const BUCKET_HEADER: usize = 16;

/// Where a child node is: still on its page, or read and changed in memory.
enum Child {
    Page(u64),
    Node(Box<Node>),
}

/// One element of a node: a leaf's key, flags and value, or a branch's key and child.
struct Inode {
    key: Vec<u8>,
    flags: u32,
    value: Vec<u8>,
    child: Option<Child>,
}

/// A node read into memory to be changed; its old page is freed when it is written.
struct Node {
    leaf: bool,
    inodes: Vec<Inode>,
    /// The page (and its overflow span) it was read from; `None` for a new or inline node.
    from: Option<(u64, u64)>,
}

/// A top-level bucket this transaction changes.
enum Edit {
    /// Deleted (and its pages freed).
    Deleted,
    /// Its tree, its root read into memory, and its sequence.
    Tree { root: Node, sequence: u64 },
}

/// One write transaction on a bbolt file.
pub struct Tx {
    db: Db,
    file: File,
    ps: usize,
    meta: Meta,
    /// Pages free before this transaction, which it may use.
    free: BTreeSet<u64>,
    /// Pages this transaction freed (reusable only by the next one).
    freed: BTreeSet<u64>,
    /// The high-water mark as pages are allocated past it.
    pgid: u64,
    /// Whether the file stores a freelist (written back at commit).
    stored_freelist: bool,
    edits: BTreeMap<Vec<u8>, Edit>,
}

impl Tx {
    /// Opens the bbolt file at `path` for one write transaction: its current
    /// meta page and, when stored, its freelist.
    pub fn begin(path: &Path) -> Result<Tx> {
        let db = Db::open(path)?;
        let file = hostfs::open_for_update(path)?;
        // bbolt's own lock: etcd (or any bbolt writer) holding the file open
        // for writing means it is not ours to change.
        let free_to_write = hostfs::try_lock(&file)
            .map_err(|e| super::BoltError::Io(std::io::Error::other(format!("{e:#}"))))?;
        if !free_to_write {
            return Err(corrupt(
                None,
                "another process (etcd?) holds the database open for writing: stop it first",
            ));
        }
        let meta = db.meta();
        let ps = meta.page_size as usize;
        let stored_freelist = meta.freelist != NO_FREELIST;
        let mut free = BTreeSet::new();
        if stored_freelist {
            let page = db.page(meta.freelist)?;
            if u16_at(&page, 8) != FREELIST {
                return Err(corrupt(
                    Some(meta.freelist),
                    "the meta's freelist page is no freelist",
                ));
            }
            for id in freelist_ids(&page).map_err(|w| corrupt(Some(meta.freelist), w))? {
                if id < 2 || id >= meta.pgid {
                    return Err(corrupt(
                        Some(meta.freelist),
                        format!("the freelist lists page {id}, outside the pages 2..{}", meta.pgid),
                    ));
                }
                free.insert(id);
            }
        }
        Ok(Tx {
            db,
            file,
            ps,
            meta,
            free,
            freed: BTreeSet::new(),
            pgid: meta.pgid,
            stored_freelist,
            edits: BTreeMap::new(),
        })
    }

    /// Sets `key` to `value` in the top-level bucket `bucket`, creating the bucket when absent.
    pub fn put(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        let root = self
            .bucket(bucket, true)?
            .ok_or_else(|| corrupt(None, "no bucket"))?;
        let mut root = std::mem::replace(root, empty_leaf());
        let r = self.put_in(&mut root, key, value, 0, 0);
        if let Some(Edit::Tree { root: slot, .. }) = self.edits.get_mut(bucket) {
            *slot = root;
        }
        r
    }

    /// Creates the top-level bucket `bucket`; nothing when it exists.
    pub fn create_bucket(&mut self, bucket: &[u8]) -> Result<()> {
        self.bucket(bucket, true).map(|_| ())
    }

    /// Deletes the top-level bucket `bucket` and frees its pages; false when it does not exist.
    pub fn delete_bucket(&mut self, bucket: &[u8]) -> Result<bool> {
        let existed = match self.edits.get(bucket) {
            Some(Edit::Deleted) => false,
            Some(Edit::Tree { .. }) => true,
            None => self.header(bucket)?.is_some(),
        };
        if !existed {
            return Ok(false);
        }
        match self.edits.insert(bucket.to_vec(), Edit::Deleted) {
            Some(Edit::Tree { root, .. }) => self.free_tree_node(root)?,
            Some(Edit::Deleted) => {}
            None => {
                if let Some(h) = self.header(bucket)?
                    && let Some(id) = root_page(&h)
                {
                    self.free_tree_page(id, 0)?;
                }
            }
        }
        Ok(true)
    }

    /// Writes the changed nodes, the freelist and the next meta page, with an
    /// fsync before and after the meta page.
    pub fn commit(mut self) -> Result<()> {
        let mut root = self.read_root_tree()?;
        for (name, edit) in std::mem::take(&mut self.edits) {
            match edit {
                Edit::Deleted => self.put_in(&mut root, &name, &[], 0, DELETE)?,
                Edit::Tree { root: tree, sequence } => {
                    let header = self.write_bucket(tree, sequence)?;
                    self.put_in(&mut root, &name, &header, BUCKET_LEAF, 0)?;
                }
            }
        }
        let root_id = self.write_tree(root)?;
        let freelist = if self.stored_freelist {
            self.write_freelist()?
        } else {
            NO_FREELIST
        };
        hostfs::sync_data(&self.file)?;
        let meta = Meta {
            root: root_id,
            freelist,
            pgid: self.pgid,
            txid: self.meta.txid + 1,
            ..self.meta
        };
        let page = meta_page(&meta, self.ps);
        hostfs::write_at(&self.file, (meta.txid % 2) * self.ps as u64, &page)?;
        hostfs::sync_data(&self.file)?;
        Ok(())
    }

    /// The tree of top-level bucket `bucket` read into memory for a change,
    /// created empty when absent and `create`.
    fn bucket(&mut self, bucket: &[u8], create: bool) -> Result<Option<&mut Node>> {
        let have = matches!(self.edits.get(bucket), Some(Edit::Tree { .. }));
        if !have {
            let deleted = matches!(self.edits.get(bucket), Some(Edit::Deleted));
            let header = if deleted { None } else { self.header(bucket)? };
            let edit = match header {
                Some(h) => {
                    let sequence = u64_at(&h, 8);
                    let root = match root_page(&h) {
                        Some(id) => self.read_node(id)?,
                        None => parse_node(&h[BUCKET_HEADER..], None)
                            .map_err(|w| corrupt(Some(self.meta.root), format!("inline bucket: {w}")))?,
                    };
                    Edit::Tree { root, sequence }
                }
                None if create => Edit::Tree {
                    root: empty_leaf(),
                    sequence: 0,
                },
                None => return Ok(None),
            };
            self.edits.insert(bucket.to_vec(), edit);
        }
        Ok(match self.edits.get_mut(bucket) {
            Some(Edit::Tree { root, .. }) => Some(root),
            _ => None,
        })
    }

    /// The header (value) of top-level bucket `name` as stored now.
    fn header(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        self.db
            .for_each(&[], &mut |k: &[u8], v: &[u8], is_bucket: bool| {
                if k >= name {
                    if k == name && is_bucket {
                        found = Some(v.to_vec());
                    }
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            })?;
        if let Some(h) = &found
            && h.len() < BUCKET_HEADER
        {
            return Err(corrupt(
                Some(self.meta.root),
                "a bucket header shorter than 16 bytes",
            ));
        }
        Ok(found)
    }

    fn read_root_tree(&self) -> Result<Node> {
        self.read_node(self.meta.root)
    }

    /// Reads page `id` (with its overflow pages) as a node.
    fn read_node(&self, id: u64) -> Result<Node> {
        let page = self.db.page(id)?;
        let span = (page.len() / self.ps) as u64;
        parse_node(&page, Some((id, span))).map_err(|w| corrupt(Some(id), w))
    }

    /// Puts (or with `mode` DELETE removes) `key` in the tree under `node`.
    fn put_in(&mut self, node: &mut Node, key: &[u8], value: &[u8], flags: u32, mode: u8) -> Result<()> {
        let mut node = node;
        for _ in 0..=MAX_DEPTH {
            if node.leaf {
                match node.inodes.binary_search_by(|i| i.key.as_slice().cmp(key)) {
                    Ok(i) if mode == DELETE => {
                        node.inodes.remove(i);
                    }
                    Err(_) if mode == DELETE => {}
                    Ok(i) => {
                        node.inodes[i].value = value.to_vec();
                        node.inodes[i].flags = flags;
                    }
                    Err(i) => node.inodes.insert(
                        i,
                        Inode {
                            key: key.to_vec(),
                            flags,
                            value: value.to_vec(),
                            child: None,
                        },
                    ),
                }
                return Ok(());
            }
            if node.inodes.is_empty() {
                return Err(corrupt(node.from.map(|f| f.0), "a branch without children"));
            }
            let i = match node.inodes.binary_search_by(|n| n.key.as_slice().cmp(key)) {
                Ok(i) => i,
                Err(0) => 0,
                Err(i) => i - 1,
            };
            let child = &mut node.inodes[i];
            if let Some(Child::Page(id)) = child.child {
                child.child = Some(Child::Node(Box::new(self.read_node(id)?)));
            }
            node = match &mut node.inodes[i].child {
                Some(Child::Node(n)) => n,
                _ => return Err(corrupt(None, "a branch element without a child")),
            };
        }
        Err(corrupt(
            None,
            format!("the tree is more than {MAX_DEPTH} levels deep"),
        ))
    }

    /// Writes a bucket's tree and returns its header: inline when bbolt would inline it.
    fn write_bucket(&mut self, root: Node, sequence: u64) -> Result<Vec<u8>> {
        let mut header = Vec::with_capacity(BUCKET_HEADER);
        let inline = root.leaf
            && root.inodes.iter().all(|i| i.flags & BUCKET_LEAF == 0)
            && node_size(&root.inodes, true) <= self.ps / 4;
        if inline {
            if let Some((id, span)) = root.from {
                self.free_span(id, span);
            }
            header.extend(0u64.to_le_bytes());
            header.extend(sequence.to_le_bytes());
            header.extend(serialize(&root.inodes, true, 0, 0, 0));
            return Ok(header);
        }
        let id = self.write_tree(root)?;
        header.extend(id.to_le_bytes());
        header.extend(sequence.to_le_bytes());
        Ok(header)
    }

    /// Writes a whole changed tree and returns its root page (a new branch on top when the root split).
    fn write_tree(&mut self, root: Node) -> Result<u64> {
        let mut parts = self.spill(root, 0)?;
        for _ in 0..=MAX_DEPTH {
            match parts.len() {
                0 => return self.write_node(Vec::new(), true).map(|(_, id)| id),
                1 => return Ok(parts[0].1),
                _ => {
                    let inodes = parts
                        .into_iter()
                        .map(|(key, id)| Inode {
                            key,
                            flags: 0,
                            value: Vec::new(),
                            child: Some(Child::Page(id)),
                        })
                        .collect();
                    parts = self.spill(
                        Node {
                            leaf: false,
                            inodes,
                            from: None,
                        },
                        0,
                    )?;
                }
            }
        }
        Err(corrupt(None, "the tree grew too deep"))
    }

    /// Writes `node` (its changed children first), split as bbolt splits, and
    /// returns each resulting page's first key and id; its old page is freed.
    fn spill(&mut self, node: Node, depth: usize) -> Result<Vec<(Vec<u8>, u64)>> {
        if depth > MAX_DEPTH {
            return Err(corrupt(None, "the tree is too deep"));
        }
        if let Some((id, span)) = node.from {
            self.free_span(id, span);
        }
        let mut inodes = Vec::with_capacity(node.inodes.len());
        for mut inode in node.inodes {
            match inode.child.take() {
                Some(Child::Node(child)) => {
                    for (key, id) in self.spill(*child, depth + 1)? {
                        inodes.push(Inode {
                            key,
                            flags: 0,
                            value: Vec::new(),
                            child: Some(Child::Page(id)),
                        });
                    }
                }
                other => {
                    inode.child = other;
                    inodes.push(inode);
                }
            }
        }
        if inodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for part in split(inodes, node.leaf, self.ps) {
            out.push(self.write_node(part, node.leaf)?);
        }
        Ok(out)
    }

    /// Allocates pages for one node, writes it, and returns its first key and page id.
    fn write_node(&mut self, inodes: Vec<Inode>, leaf: bool) -> Result<(Vec<u8>, u64)> {
        let size = node_size(&inodes, leaf);
        let span = size.div_ceil(self.ps).max(1) as u64;
        let id = self.allocate(span);
        let bytes = serialize(&inodes, leaf, id, span, self.ps);
        hostfs::write_at(&self.file, id * self.ps as u64, &bytes)?;
        let first = inodes.into_iter().next().map(|i| i.key).unwrap_or_default();
        Ok((first, id))
    }

    /// `span` contiguous pages: the first run in the freelist, else past the high-water mark.
    fn allocate(&mut self, span: u64) -> u64 {
        let mut run_start = 0;
        let mut prev = None;
        let mut found = None;
        for &id in &self.free {
            if prev.is_none_or(|p| p + 1 != id) {
                run_start = id;
            }
            prev = Some(id);
            if id - run_start + 1 == span {
                found = Some(run_start);
                break;
            }
        }
        if let Some(start) = found {
            for id in start..start + span {
                self.free.remove(&id);
            }
            return start;
        }
        let id = self.pgid;
        self.pgid += span;
        id
    }

    fn free_span(&mut self, id: u64, span: u64) {
        self.freed.extend(id..id + span);
    }

    /// Frees every page of the tree under page `id`.
    fn free_tree_page(&mut self, id: u64, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(corrupt(Some(id), "the tree is too deep"));
        }
        let node = self.read_node(id)?;
        self.free_tree_node_at(node, depth)
    }

    fn free_tree_node(&mut self, node: Node) -> Result<()> {
        self.free_tree_node_at(node, 0)
    }

    fn free_tree_node_at(&mut self, node: Node, depth: usize) -> Result<()> {
        if let Some((id, span)) = node.from {
            self.free_span(id, span);
        }
        for inode in node.inodes {
            match inode.child {
                Some(Child::Page(id)) => self.free_tree_page(id, depth + 1)?,
                Some(Child::Node(n)) => self.free_tree_node_at(*n, depth + 1)?,
                None if inode.flags & BUCKET_LEAF != 0 => {
                    if let Some(id) = root_page(&inode.value) {
                        self.free_tree_page(id, depth + 1)?;
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Frees the old freelist pages, writes the new freelist and returns its page id.
    fn write_freelist(&mut self) -> Result<u64> {
        let old = self.meta.freelist;
        let span = (self.db.page(old)?.len() / self.ps) as u64;
        self.free_span(old, span);
        // Room for every id free now (the allocation below can only shrink the list).
        let count = self.free.len() + self.freed.len();
        let span = freelist_size(count).div_ceil(self.ps).max(1) as u64;
        let id = self.allocate(span);
        let ids: Vec<u64> = self.free.union(&self.freed).copied().collect();
        let page = freelist_page(id, &ids, span, self.ps);
        hostfs::write_at(&self.file, id * self.ps as u64, &page)?;
        Ok(id)
    }
}

/// `put_in`'s mode that removes the key.
const DELETE: u8 = 1;

fn empty_leaf() -> Node {
    Node {
        leaf: true,
        inodes: Vec::new(),
        from: None,
    }
}

/// A bucket header's root page, `None` for an inline bucket.
fn root_page(header: &[u8]) -> Option<u64> {
    match bucket_root(header, 0) {
        Ok(super::Root::Page(id)) => Some(id),
        _ => None,
    }
}

/// Parses a branch or leaf page (or an inline bucket's page) into a node.
fn parse_node(page: &[u8], from: Option<(u64, u64)>) -> std::result::Result<Node, String> {
    if page.len() < HEADER {
        return Err("shorter than a page header".into());
    }
    let (flags, count) = (u16_at(page, 8), usize::from(u16_at(page, 10)));
    let leaf = match flags {
        LEAF => true,
        BRANCH if from.is_some() => false,
        _ => return Err(format!("page type {flags:#x}, expected a branch or a leaf")),
    };
    if HEADER + count * ELEMENT > page.len() {
        return Err(format!("{count} elements do not fit the page"));
    }
    let mut inodes = Vec::with_capacity(count);
    for i in 0..count {
        let e = element(page, i, !leaf)?;
        if inodes.last().is_some_and(|p: &Inode| p.key.as_slice() >= e.key) {
            return Err(format!("element {i}: keys out of order"));
        }
        inodes.push(if leaf {
            Inode {
                key: e.key.to_vec(),
                flags: u32::try_from(e.extra).unwrap_or(0),
                value: e.value.to_vec(),
                child: None,
            }
        } else {
            Inode {
                key: e.key.to_vec(),
                flags: 0,
                value: Vec::new(),
                child: Some(Child::Page(e.extra)),
            }
        });
    }
    if !leaf && inodes.is_empty() {
        return Err("a branch without children".into());
    }
    Ok(Node { leaf, inodes, from })
}

/// The bytes a node takes: the page header, an element per inode, keys and values.
fn node_size(inodes: &[Inode], leaf: bool) -> usize {
    HEADER
        + inodes
            .iter()
            .map(|i| ELEMENT + i.key.len() + if leaf { i.value.len() } else { 0 })
            .sum::<usize>()
}

/// Splits a node's inodes as bbolt's `node.split` does with the default fill
/// percent (half a page), keeping at least [`MIN_KEYS`] in each part.
fn split(mut inodes: Vec<Inode>, leaf: bool, ps: usize) -> Vec<Vec<Inode>> {
    let mut parts = Vec::new();
    loop {
        if inodes.len() <= MIN_KEYS * 2 || node_size(&inodes, leaf) <= ps {
            parts.push(inodes);
            return parts;
        }
        let threshold = ps / 2;
        let (mut size, mut at) = (HEADER, 0);
        for (i, inode) in inodes.iter().enumerate().take(inodes.len() - MIN_KEYS) {
            at = i;
            let el = ELEMENT + inode.key.len() + if leaf { inode.value.len() } else { 0 };
            if i >= MIN_KEYS && size + el > threshold {
                break;
            }
            size += el;
        }
        let rest = inodes.split_off(at);
        parts.push(inodes);
        inodes = rest;
    }
}

/// A node as bbolt lays it out on `span` pages of `ps` bytes (`ps` 0: unpadded, for inline buckets).
fn serialize(inodes: &[Inode], leaf: bool, id: u64, span: u64, ps: usize) -> Vec<u8> {
    let size = node_size(inodes, leaf);
    let total = if ps == 0 {
        size
    } else {
        ps * usize::try_from(span).unwrap_or(1)
    };
    let mut p = vec![0u8; total.max(size)];
    p[0..8].copy_from_slice(&id.to_le_bytes());
    p[8..10].copy_from_slice(&(if leaf { LEAF } else { BRANCH }).to_le_bytes());
    p[10..12].copy_from_slice(&u16::try_from(inodes.len()).unwrap_or(u16::MAX).to_le_bytes());
    p[12..16].copy_from_slice(&u32::try_from(span.saturating_sub(1)).unwrap_or(0).to_le_bytes());
    let mut data = HEADER + inodes.len() * ELEMENT;
    for (i, inode) in inodes.iter().enumerate() {
        let at = HEADER + i * ELEMENT;
        let pos = u32::try_from(data - at).unwrap_or(u32::MAX);
        let ksize = u32::try_from(inode.key.len()).unwrap_or(u32::MAX);
        if leaf {
            let vsize = u32::try_from(inode.value.len()).unwrap_or(u32::MAX);
            p[at..at + 4].copy_from_slice(&inode.flags.to_le_bytes());
            p[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            p[at + 8..at + 12].copy_from_slice(&ksize.to_le_bytes());
            p[at + 12..at + 16].copy_from_slice(&vsize.to_le_bytes());
        } else {
            let child = match inode.child {
                Some(Child::Page(id)) => id,
                _ => 0,
            };
            p[at..at + 4].copy_from_slice(&pos.to_le_bytes());
            p[at + 4..at + 8].copy_from_slice(&ksize.to_le_bytes());
            p[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        }
        p[data..data + inode.key.len()].copy_from_slice(&inode.key);
        data += inode.key.len();
        if leaf {
            p[data..data + inode.value.len()].copy_from_slice(&inode.value);
            data += inode.value.len();
        }
    }
    p
}

/// The ids a freelist page lists (the 0xFFFF count marker read).
fn freelist_ids(page: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let (mut count, mut start) = (usize::from(u16_at(page, 10)), HEADER);
    if count == 0xFFFF {
        count = usize::try_from(u64_at(page, HEADER)).unwrap_or(usize::MAX);
        start += 8;
    }
    if count > page.len().saturating_sub(start) / 8 {
        return Err(format!(
            "the freelist says it holds {count} page ids, more than it has room for"
        ));
    }
    Ok((0..count).map(|i| u64_at(page, start + i * 8)).collect())
}

/// The bytes a freelist of `count` ids takes.
fn freelist_size(count: usize) -> usize {
    HEADER + 8 * (count + usize::from(count >= 0xFFFF))
}

/// A freelist page (sorted ids) on `span` pages.
fn freelist_page(id: u64, ids: &[u64], span: u64, ps: usize) -> Vec<u8> {
    let mut p = vec![0u8; ps * usize::try_from(span).unwrap_or(1)];
    p[0..8].copy_from_slice(&id.to_le_bytes());
    p[8..10].copy_from_slice(&FREELIST.to_le_bytes());
    p[12..16].copy_from_slice(&u32::try_from(span - 1).unwrap_or(0).to_le_bytes());
    let mut at = HEADER;
    if ids.len() >= 0xFFFF {
        p[10..12].copy_from_slice(&0xFFFFu16.to_le_bytes());
        p[at..at + 8].copy_from_slice(&(ids.len() as u64).to_le_bytes());
        at += 8;
    } else {
        p[10..12].copy_from_slice(&u16::try_from(ids.len()).unwrap_or(0).to_le_bytes());
    }
    for id in ids {
        p[at..at + 8].copy_from_slice(&id.to_le_bytes());
        at += 8;
    }
    p
}

/// A meta page for `meta` on a page of `ps` bytes, its checksum set.
fn meta_page(meta: &Meta, ps: usize) -> Vec<u8> {
    let mut p = vec![0u8; ps];
    p[0..8].copy_from_slice(&(meta.txid % 2).to_le_bytes());
    p[8..10].copy_from_slice(&META_PAGE.to_le_bytes());
    let m = &mut p[HEADER..HEADER + META_LEN];
    m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    m[4..8].copy_from_slice(&VERSION.to_le_bytes());
    m[8..12].copy_from_slice(&meta.page_size.to_le_bytes());
    m[12..16].copy_from_slice(&meta.flags.to_le_bytes());
    m[16..24].copy_from_slice(&meta.root.to_le_bytes());
    m[24..32].copy_from_slice(&meta.sequence.to_le_bytes());
    m[32..40].copy_from_slice(&meta.freelist.to_le_bytes());
    m[40..48].copy_from_slice(&meta.pgid.to_le_bytes());
    m[48..56].copy_from_slice(&meta.txid.to_le_bytes());
    let sum = fnv1a64(&m[..56]);
    m[56..64].copy_from_slice(&sum.to_le_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::super::testdb::{PS, leaf, page};
    use super::*;
    use std::ops::ControlFlow;

    /// A db of 512-byte pages with an empty root bucket, with or without a stored freelist.
    fn new_db(stored_freelist: bool) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = Vec::new();
        let pgid = if stored_freelist { 4 } else { 3 };
        for txid in [0u64, 1] {
            let meta = Meta {
                page_size: u32::try_from(PS).unwrap(),
                flags: 0,
                root: 2,
                sequence: 0,
                freelist: if stored_freelist { 3 } else { NO_FREELIST },
                pgid,
                txid,
            };
            bytes.extend(meta_page(&meta, PS));
        }
        bytes.extend(page(leaf(2, &[])));
        if stored_freelist {
            bytes.extend(freelist_page(3, &[], 1, PS));
        }
        hostfs::write_durably(f.path(), &bytes, 0o600).unwrap();
        f
    }

    /// Every entry of top-level bucket `b`, in order.
    fn entries(path: &Path, b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = Db::open(path).unwrap();
        let mut out = Vec::new();
        let found = db
            .for_each(&[b], &mut |k: &[u8], v: &[u8], _| {
                out.push((k.to_vec(), v.to_vec()));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(found, "no bucket {}", String::from_utf8_lossy(b));
        out
    }

    /// The reader's whole check (page trees, and the freelist when stored) finds nothing.
    fn sound(path: &Path) {
        let problems = Db::open(path).unwrap().check().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    fn key(i: u64) -> Vec<u8> {
        format!("key-{i:08}").into_bytes()
    }

    /// The top-level bucket's header as stored.
    fn header(path: &Path, b: &[u8]) -> Vec<u8> {
        let db = Db::open(path).unwrap();
        let mut h = None;
        db.for_each(&[], &mut |k: &[u8], v: &[u8], _| {
            if k == b {
                h = Some(v.to_vec());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        h.unwrap()
    }

    /// Thousands of keys in random order, over several transactions, split
    /// leaves and branches into a tree three levels deep that reads back whole.
    #[test]
    fn many_keys_split_leaves_and_branches() {
        for stored in [false, true] {
            let f = new_db(stored);
            let mut want = BTreeMap::new();
            let mut x: u64 = 12345;
            for _ in 0..8 {
                let mut tx = Tx::begin(f.path()).unwrap();
                for _ in 0..250 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let k = key(x >> 44);
                    let v = format!("value {x}").into_bytes();
                    tx.put(b"key", &k, &v).unwrap();
                    want.insert(k, v);
                }
                tx.commit().unwrap();
                sound(f.path());
                assert_eq!(
                    entries(f.path(), b"key"),
                    want.clone().into_iter().collect::<Vec<_>>()
                );
            }
            // The bucket is on pages, its root a branch whose children are branches.
            let root = root_page(&header(f.path(), b"key")).expect("not inline");
            let db = Db::open(f.path()).unwrap();
            let p = db.page(root).unwrap();
            assert_eq!(u16_at(&p, 8), BRANCH);
            let child = element(&p, 0, true).unwrap().extra;
            assert_eq!(u16_at(&db.page(child).unwrap(), 8), BRANCH, "three levels");
        }
    }

    /// A value larger than a page is written on a node with overflow pages, and read back.
    #[test]
    fn a_large_value_gets_overflow_pages() {
        let f = new_db(true);
        let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut tx = Tx::begin(f.path()).unwrap();
        tx.put(b"key", b"small", b"1").unwrap();
        tx.put(b"key", b"large", &big).unwrap();
        tx.commit().unwrap();
        sound(f.path());
        assert_eq!(
            entries(f.path(), b"key"),
            vec![
                (b"large".to_vec(), big.clone()),
                (b"small".to_vec(), b"1".to_vec())
            ]
        );
        let root = root_page(&header(f.path(), b"key")).expect("too large to be inline");
        let p = Db::open(f.path()).unwrap().page(root).unwrap();
        assert_eq!(
            p.len() / PS,
            (HEADER + 2 * ELEMENT + 5 + 3000 + 5 + 1).div_ceil(PS),
            "a node with overflow pages"
        );
        // Replacing it frees the overflow pages, which the freelist then lists.
        let mut tx = Tx::begin(f.path()).unwrap();
        tx.put(b"key", b"large", b"2").unwrap();
        tx.commit().unwrap();
        sound(f.path());
        let db = Db::open(f.path()).unwrap();
        let ids = freelist_ids(&db.page(db.meta().freelist).unwrap()).unwrap();
        assert!(ids.len() >= 6, "{ids:?}");
    }

    /// Deleting a large bucket frees its pages into a stored freelist that
    /// outgrows one page; the next transactions reuse them instead of growing the file.
    #[test]
    fn the_freelist_grows_past_a_page_and_its_pages_are_reused() {
        let f = new_db(true);
        let mut tx = Tx::begin(f.path()).unwrap();
        for i in 0..3000 {
            tx.put(b"big", &key(i), &[7u8; 40]).unwrap();
        }
        tx.commit().unwrap();
        sound(f.path());
        let mut tx = Tx::begin(f.path()).unwrap();
        assert!(tx.delete_bucket(b"big").unwrap());
        assert!(!tx.delete_bucket(b"big").unwrap());
        tx.commit().unwrap();
        sound(f.path());
        let db = Db::open(f.path()).unwrap();
        let (fl, high) = (db.page(db.meta().freelist).unwrap(), db.meta().pgid);
        assert!(fl.len() > PS, "the freelist has overflow pages");
        assert!(freelist_ids(&fl).unwrap().len() > 300);
        drop(db);
        let mut tx = Tx::begin(f.path()).unwrap();
        for i in 0..500 {
            tx.put(b"small", &key(i), b"v").unwrap();
        }
        tx.commit().unwrap();
        sound(f.path());
        assert_eq!(
            Db::open(f.path()).unwrap().meta().pgid,
            high,
            "pages reused, the file did not grow"
        );
        assert_eq!(entries(f.path(), b"small").len(), 500);
        let db = Db::open(f.path()).unwrap();
        let mut tops = Vec::new();
        db.for_each(&[], &mut |k: &[u8], _: &[u8], _| {
            tops.push(k.to_vec());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(tops, vec![b"small".to_vec()]);
    }

    /// The 0xFFFF count marker: a freelist of more ids than a u16 counts reads back whole.
    #[test]
    fn a_freelist_of_more_than_65534_ids_reads_back() {
        for n in [0usize, 1, 0xFFFE, 0xFFFF, 70_000] {
            let ids: Vec<u64> = (2..2 + n as u64).collect();
            let span = freelist_size(n).div_ceil(PS) as u64;
            let p = freelist_page(9, &ids, span, PS);
            assert_eq!(freelist_ids(&p).unwrap(), ids, "{n} ids");
        }
    }

    /// A small bucket is written inline; grown past a quarter page it moves to
    /// pages; deleted and created again small, it is inline again.
    #[test]
    fn a_bucket_moves_between_inline_and_pages() {
        let f = new_db(false);
        let mut tx = Tx::begin(f.path()).unwrap();
        tx.put(b"meta", b"consistent_index", &5u64.to_be_bytes()).unwrap();
        tx.create_bucket(b"empty").unwrap();
        tx.commit().unwrap();
        sound(f.path());
        assert_eq!(root_page(&header(f.path(), b"meta")), None, "inline");
        assert_eq!(entries(f.path(), b"empty"), vec![]);
        let mut tx = Tx::begin(f.path()).unwrap();
        for i in 0..20 {
            tx.put(b"meta", &key(i), b"0123456789").unwrap();
        }
        tx.commit().unwrap();
        sound(f.path());
        assert!(root_page(&header(f.path(), b"meta")).is_some(), "on pages");
        assert_eq!(entries(f.path(), b"meta").len(), 21);
        let mut tx = Tx::begin(f.path()).unwrap();
        tx.delete_bucket(b"meta").unwrap();
        tx.put(b"meta", b"term", &1u64.to_be_bytes()).unwrap();
        tx.commit().unwrap();
        sound(f.path());
        assert_eq!(root_page(&header(f.path(), b"meta")), None, "inline again");
        assert_eq!(
            entries(f.path(), b"meta"),
            vec![(b"term".to_vec(), 1u64.to_be_bytes().to_vec())]
        );
    }

    /// Copy-on-write: a commit whose meta page is lost (torn) leaves the file
    /// exactly as the transaction before it left it, read through the other meta.
    #[test]
    fn a_torn_meta_page_falls_back_to_the_previous_transaction() {
        let f = new_db(true);
        let mut tx = Tx::begin(f.path()).unwrap();
        for i in 0..300 {
            tx.put(b"key", &key(i), b"first").unwrap();
        }
        tx.commit().unwrap();
        let before = entries(f.path(), b"key");
        let txid = Db::open(f.path()).unwrap().meta().txid;
        let mut tx = Tx::begin(f.path()).unwrap();
        for i in 0..300 {
            tx.put(b"key", &key(i), b"second").unwrap();
        }
        tx.put(b"other", b"k", b"v").unwrap();
        tx.commit().unwrap();
        assert_eq!(Db::open(f.path()).unwrap().meta().txid, txid + 1);
        // Tear the meta page the second commit wrote.
        let mut bytes = std::fs::read(f.path()).unwrap();
        let at = usize::try_from((txid + 1) % 2).unwrap() * PS + HEADER + 20;
        bytes[at] ^= 0xFF;
        hostfs::write_durably(f.path(), &bytes, 0o600).unwrap();
        let db = Db::open(f.path()).unwrap();
        assert_eq!(db.meta().txid, txid);
        drop(db);
        assert_eq!(entries(f.path(), b"key"), before);
        sound(f.path());
    }

    /// bbolt's split: parts of at least two keys, each at most half a page unless a key is larger.
    #[test]
    fn split_keeps_two_keys_a_side_and_half_pages() {
        let inodes = |n: usize, v: usize| -> Vec<Inode> {
            (0..n)
                .map(|i| Inode {
                    key: key(i as u64),
                    flags: 0,
                    value: vec![0; v],
                    child: None,
                })
                .collect()
        };
        assert_eq!(split(inodes(4, 1000), true, PS).len(), 1, "four keys never split");
        let parts = split(inodes(5, 1000), true, PS);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 3]);
        let parts = split(inodes(100, 10), true, PS);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.len() >= MIN_KEYS);
            assert!(node_size(p, true) <= PS, "{}", node_size(p, true));
        }
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 100);
    }
}
