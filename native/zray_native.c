/*
 * zray._native -- small native helpers for the zray node daemon.
 *
 * 1. Allocator: hands out offsets inside one shared-memory region.
 *
 *    The region itself lives elsewhere; this object only does bookkeeping.
 *    The region [0, usable) is split into an address-ordered sequence of
 *    blocks that tile it exactly, each block either FREE or USED.  All block
 *    offsets and sizes are multiples of `alignment`, so every offset handed
 *    out is aligned.  Three structures index the blocks:
 *
 *    a) Physical neighbour links (prev/next in address order).  Freeing a
 *       block looks at its two neighbours only, so coalescing is O(1) and
 *       no two FREE blocks are ever adjacent (invariant).
 *
 *    b) An AVL tree of the FREE blocks keyed by (size, offset).  alloc()
 *       descends it once to find the smallest free block that fits, with
 *       the lowest offset among equal sizes (best fit, O(log n)).  Best fit
 *       was chosen over TLSF's "good fit" because TLSF rounds the request up
 *       to the next size class and can miss a block that would fit exactly
 *       (e.g. a capacity-sized request once everything has been freed); the
 *       eviction loop of the caller relies on "-1 means really nothing
 *       fits" (no needless evictions).  largest_free() is the rightmost
 *       node, also O(log n).  Two constant-factor tricks: retracing after
 *       insert/remove stops as soon as a subtree height is unchanged, and
 *       when a split or a merge changes a free block's key without moving
 *       it past its in-order neighbour, the key is updated in place instead
 *       of remove + re-insert (e.g. carving the big tail block).
 *
 *    c) An open-addressing hash table (linear probing, Fibonacci hashing,
 *       backward-shift deletion, load <= 1/2) mapping offset -> USED block,
 *       so free(offset)/size_of(offset) are O(1) and an unknown or already
 *       freed offset is detected (KeyError) instead of corrupting state.
 *
 *    Blocks live in one malloc'ed array (the "pool") and refer to each other
 *    by 32-bit index, not pointer, so the pool can be grown with realloc().
 *    Unused pool slots are chained into a spare list; the pool and the hash
 *    table grow on demand (never shrink) and are freed in tp_dealloc.  All
 *    methods run with the GIL held and never release it, so the object is
 *    safe (if not concurrent) even when shared between Python threads.
 *
 * 2. parallel_copy(dst, src, threads=0): memcpy between two buffer-protocol
 *    objects with the GIL released, split across pthreads for large copies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Integer argument parsing                                                 */
/* ------------------------------------------------------------------------ */

/* Convert an int-like object (anything with __index__, never float) to
 * int64.  TypeError for non-integers, OverflowError outside int64. */
static int
as_int64(PyObject *obj, long long *out)
{
    long long v;
    if (PyLong_Check(obj)) {
        v = PyLong_AsLongLong(obj);
    }
    else {
        PyObject *idx = PyNumber_Index(obj); /* TypeError for float, str... */
        if (idx == NULL)
            return -1;
        v = PyLong_AsLongLong(idx);
        Py_DECREF(idx);
    }
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Allocator: data structures                                               */
/* ------------------------------------------------------------------------ */

#define NIL UINT32_MAX
#define MAX_BLOCKS ((uint32_t)(UINT32_MAX - 1))

enum { ST_SPARE = 0, ST_FREE = 1, ST_USED = 2 };

typedef struct {
    uint64_t off;     /* start offset in the region */
    uint64_t size;    /* bytes, a multiple of alignment */
    uint32_t prev;    /* physical neighbour at lower address, or NIL */
    uint32_t next;    /* physical neighbour at higher address, or NIL */
    uint32_t left;    /* AVL child while FREE; spare-list link while SPARE */
    uint32_t right;   /* AVL child while FREE */
    int8_t height;    /* AVL height of the subtree (leaf = 1) */
    uint8_t state;    /* ST_SPARE / ST_FREE / ST_USED */
} Block;

typedef struct {
    PyObject_HEAD
    Block *blk;          /* block pool */
    uint32_t pool_cap;   /* number of slots in blk */
    uint32_t spare;      /* head of the spare-slot list */
    uint32_t root;       /* AVL root of FREE blocks */
    uint32_t head;       /* block at offset 0 (NIL if usable == 0) */
    uint32_t *ht;        /* hash table of USED blocks: slot -> block index */
    uint64_t ht_mask;    /* table size - 1 (size is a power of two) */
    int ht_bits;         /* log2(table size) */
    uint64_t ht_count;   /* entries in ht == num_allocations */
    long long capacity;  /* as given */
    long long alignment; /* power of two */
    int shift;           /* log2(alignment) */
    uint64_t usable;     /* capacity rounded down to alignment */
    uint64_t used;       /* bytes in USED blocks */
    uint64_t nfree;      /* number of FREE blocks */
} AllocatorObject;

/* --- block pool ---------------------------------------------------------- */

static int
pool_grow(AllocatorObject *self)
{
    uint64_t new_cap = self->pool_cap ? (uint64_t)self->pool_cap * 2 : 64;
    if (new_cap > MAX_BLOCKS)
        new_cap = MAX_BLOCKS;
    if (new_cap <= self->pool_cap || new_cap > SIZE_MAX / sizeof(Block)) {
        PyErr_SetString(PyExc_MemoryError, "Allocator: too many blocks");
        return -1;
    }
    Block *nb = (Block *)realloc(self->blk, (size_t)new_cap * sizeof(Block));
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->blk = nb;
    /* Chain the new slots onto the spare list (lowest index first). */
    for (uint64_t i = new_cap; i-- > self->pool_cap;) {
        nb[i].state = ST_SPARE;
        nb[i].left = self->spare;
        self->spare = (uint32_t)i;
    }
    self->pool_cap = (uint32_t)new_cap;
    return 0;
}

/* Caller guarantees a spare slot exists (see alloc()). */
static inline uint32_t
pool_take(AllocatorObject *self)
{
    uint32_t i = self->spare;
    self->spare = self->blk[i].left;
    return i;
}

static inline void
pool_release(AllocatorObject *self, uint32_t i)
{
    self->blk[i].state = ST_SPARE;
    self->blk[i].left = self->spare;
    self->spare = i;
}

/* --- AVL tree of free blocks, keyed by (size, off) ----------------------- */

static inline int
key_less(const Block *B, uint32_t a, uint32_t b)
{
    return B[a].size < B[b].size || (B[a].size == B[b].size && B[a].off < B[b].off);
}

static inline int
avl_h(const Block *B, uint32_t t)
{
    return t == NIL ? 0 : B[t].height;
}

static inline void
avl_fix(Block *B, uint32_t t)
{
    int hl = avl_h(B, B[t].left), hr = avl_h(B, B[t].right);
    B[t].height = (int8_t)(1 + (hl > hr ? hl : hr));
}

static uint32_t
avl_rot_right(Block *B, uint32_t t)
{
    uint32_t l = B[t].left;
    B[t].left = B[l].right;
    B[l].right = t;
    avl_fix(B, t);
    avl_fix(B, l);
    return l;
}

static uint32_t
avl_rot_left(Block *B, uint32_t t)
{
    uint32_t r = B[t].right;
    B[t].right = B[r].left;
    B[r].left = t;
    avl_fix(B, t);
    avl_fix(B, r);
    return r;
}

/* Restore the AVL property at t (children already balanced). */
static uint32_t
avl_balance(Block *B, uint32_t t)
{
    avl_fix(B, t);
    int bf = avl_h(B, B[t].left) - avl_h(B, B[t].right);
    if (bf > 1) {
        uint32_t l = B[t].left;
        if (avl_h(B, B[l].left) < avl_h(B, B[l].right))
            B[t].left = avl_rot_left(B, l);
        return avl_rot_right(B, t);
    }
    if (bf < -1) {
        uint32_t r = B[t].right;
        if (avl_h(B, B[r].right) < avl_h(B, B[r].left))
            B[t].right = avl_rot_right(B, r);
        return avl_rot_left(B, t);
    }
    return t;
}

/* Insert node n below t; returns the new subtree root.  Recursion depth is
 * the tree height (< 1.45 * log2(2^32) ~ 47).  Retracing stops early: if a
 * child subtree's height did not change, nothing above it changes either. */
static uint32_t
avl_insert(Block *B, uint32_t t, uint32_t n)
{
    if (t == NIL) {
        B[n].left = B[n].right = NIL;
        B[n].height = 1;
        return n;
    }
    uint32_t *link = key_less(B, n, t) ? &B[t].left : &B[t].right;
    int h0 = avl_h(B, *link);
    *link = avl_insert(B, *link, n);
    if (avl_h(B, *link) == h0)
        return t;
    return avl_balance(B, t);
}

static uint32_t
avl_remove_min(Block *B, uint32_t t, uint32_t *min)
{
    if (B[t].left == NIL) {
        *min = t;
        return B[t].right;
    }
    int h0 = avl_h(B, B[t].left);
    B[t].left = avl_remove_min(B, B[t].left, min);
    if (avl_h(B, B[t].left) == h0)
        return t;
    return avl_balance(B, t);
}

/* Remove node n (which must be in the tree; keys are unique). */
static uint32_t
avl_remove(Block *B, uint32_t t, uint32_t n)
{
    if (t == NIL)
        return NIL; /* not reached while invariants hold */
    if (t == n) {
        uint32_t l = B[t].left, r = B[t].right, m;
        if (r == NIL)
            return l;
        r = avl_remove_min(B, r, &m);
        B[m].left = l;
        B[m].right = r;
        return avl_balance(B, m);
    }
    uint32_t *link = key_less(B, n, t) ? &B[t].left : &B[t].right;
    int h0 = avl_h(B, *link);
    *link = avl_remove(B, *link, n);
    if (avl_h(B, *link) == h0)
        return t;
    return avl_balance(B, t);
}

/* Smallest key with size >= need (best fit, lowest offset on ties), or NIL.
 * *pred receives that node's in-order predecessor: the last node where the
 * descent turned right, i.e. the largest key with size < need. */
static inline uint32_t
avl_best_fit(const Block *B, uint32_t t, uint64_t need, uint32_t *pred)
{
    uint32_t best = NIL, p = NIL;
    while (t != NIL) {
        if (B[t].size >= need) {
            best = t;
            t = B[t].left;
        }
        else {
            p = t;
            t = B[t].right;
        }
    }
    *pred = p;
    return best;
}

/* In-order successor of node n (which is in the tree rooted at t), or NIL. */
static uint32_t
avl_successor(const Block *B, uint32_t t, uint32_t n)
{
    uint32_t succ = NIL;
    while (t != n) {
        if (key_less(B, n, t)) {
            succ = t;
            t = B[t].left;
        }
        else {
            t = B[t].right;
        }
    }
    if (B[n].right != NIL) {
        succ = B[n].right;
        while (B[succ].left != NIL)
            succ = B[succ].left;
    }
    return succ;
}

/* --- hash table: offset -> USED block index ------------------------------ */

static inline uint64_t
ht_slot(const AllocatorObject *self, uint64_t off)
{
    /* Offsets are multiples of alignment: drop the zero bits, then take the
     * high bits of a Fibonacci (multiplicative) hash. */
    return ((off >> self->shift) * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - self->ht_bits);
}

static int
ht_init(AllocatorObject *self, int bits)
{
    uint64_t n = (uint64_t)1 << bits;
    if (n > SIZE_MAX / sizeof(uint32_t)) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *t = (uint32_t *)malloc((size_t)n * sizeof(uint32_t));
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t, 0xff, (size_t)n * sizeof(uint32_t)); /* all NIL */
    self->ht = t;
    self->ht_bits = bits;
    self->ht_mask = n - 1;
    return 0;
}

static void
ht_put(AllocatorObject *self, uint32_t idx)
{
    uint64_t i = ht_slot(self, self->blk[idx].off);
    while (self->ht[i] != NIL)
        i = (i + 1) & self->ht_mask;
    self->ht[i] = idx;
}

/* Double the table. */
static int
ht_grow(AllocatorObject *self)
{
    uint32_t *old = self->ht;
    uint64_t old_n = self->ht_mask + 1;
    if (self->ht_bits >= 40) { /* > 2^39 live allocations: give up */
        PyErr_SetString(PyExc_MemoryError, "Allocator: hash table too large");
        return -1;
    }
    if (ht_init(self, self->ht_bits + 1) < 0) {
        self->ht = old; /* ht_init failed before touching fields */
        return -1;
    }
    for (uint64_t i = 0; i < old_n; i++)
        if (old[i] != NIL)
            ht_put(self, old[i]);
    free(old);
    return 0;
}

/* Returns the slot holding the USED block at `off`, or -1. */
static inline int64_t
ht_find(const AllocatorObject *self, uint64_t off)
{
    uint64_t i = ht_slot(self, off);
    for (;;) {
        uint32_t b = self->ht[i];
        if (b == NIL)
            return -1;
        if (self->blk[b].off == off)
            return (int64_t)i;
        i = (i + 1) & self->ht_mask;
    }
}

/* Backward-shift deletion: keeps probe chains intact without tombstones. */
static void
ht_delete_slot(AllocatorObject *self, uint64_t i)
{
    uint64_t mask = self->ht_mask, j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t b = self->ht[j];
        if (b == NIL)
            break;
        uint64_t home = ht_slot(self, self->blk[b].off);
        /* Entry at j may move to the hole at i unless its home lies
         * cyclically in (i, j]. */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            self->ht[i] = b;
            i = j;
        }
    }
    self->ht[i] = NIL;
}

/* ------------------------------------------------------------------------ */
/* Allocator: Python type                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *
Allocator_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "alignment", NULL};
    PyObject *cap_obj, *align_obj = NULL;
    long long capacity, alignment = 64;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Allocator", kwlist, &cap_obj, &align_obj))
        return NULL;
    if (as_int64(cap_obj, &capacity) < 0)
        return NULL;
    if (align_obj != NULL && as_int64(align_obj, &alignment) < 0)
        return NULL;
    if (capacity <= 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be > 0");
        return NULL;
    }
    if (alignment <= 0 || (alignment & (alignment - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "alignment must be a positive power of two");
        return NULL;
    }

    AllocatorObject *self = (AllocatorObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->blk = NULL;
    self->ht = NULL;
    self->pool_cap = 0;
    self->spare = NIL;
    self->root = NIL;
    self->head = NIL;
    self->ht_count = 0;
    self->capacity = capacity;
    self->alignment = alignment;
    self->shift = __builtin_ctzll((unsigned long long)alignment);
    self->usable = (uint64_t)capacity & ~((uint64_t)alignment - 1);
    self->used = 0;
    self->nfree = 0;

    if (pool_grow(self) < 0 || ht_init(self, 6) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    if (self->usable > 0) {
        uint32_t b = pool_take(self);
        Block *B = self->blk;
        B[b].off = 0;
        B[b].size = self->usable;
        B[b].prev = B[b].next = NIL;
        B[b].state = ST_FREE;
        self->root = avl_insert(B, NIL, b);
        self->head = b;
        self->nfree = 1;
    }
    return (PyObject *)self;
}

static void
Allocator_dealloc(AllocatorObject *self)
{
    free(self->blk);
    free(self->ht);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(alloc_doc,
"alloc(size) -> int\n\n"
"Allocate a block of at least `size` bytes (rounded up to the alignment).\n"
"Returns its aligned offset, or -1 if no free block is large enough.\n"
"ValueError if size <= 0.");

static PyObject *
Allocator_alloc(AllocatorObject *self, PyObject *arg)
{
    long long size;
    if (as_int64(arg, &size) < 0)
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "size must be > 0");
        return NULL;
    }
    /* size < 2^63 and alignment <= 2^62, so no overflow in uint64. */
    uint64_t a1 = (uint64_t)self->alignment - 1;
    uint64_t need = ((uint64_t)size + a1) & ~a1;
    if (need > self->usable)
        return PyLong_FromLong(-1);

    /* Reserve resources first so no failure can happen mid-update. */
    if (self->spare == NIL && pool_grow(self) < 0)
        return NULL;
    if ((self->ht_count + 1) * 2 > self->ht_mask + 1 && ht_grow(self) < 0)
        return NULL;

    Block *B = self->blk;
    uint32_t pred;
    uint32_t b = avl_best_fit(B, self->root, need, &pred);
    if (b == NIL)
        return PyLong_FromLong(-1);

    if (B[b].size == need) {
        /* Exact fit: the whole free block becomes used. */
        self->root = avl_remove(B, self->root, b);
        self->nfree--;
    }
    else {
        /* Split.  The used part [off, off+need) gets a fresh node u; node b
         * keeps the free tail, whose key (size-need, off+need) is smaller.
         * If it still sorts after b's predecessor, b's tree position stays
         * valid and the tree is untouched (common when carving a big hole);
         * otherwise b is re-inserted. */
        uint64_t rem = B[b].size - need, roff = B[b].off + need;
        int in_place = pred == NIL || rem > B[pred].size ||
                       (rem == B[pred].size && roff > B[pred].off);
        if (!in_place)
            self->root = avl_remove(B, self->root, b);
        uint32_t u = pool_take(self);
        B[u].off = B[b].off;
        B[u].size = need;
        B[u].prev = B[b].prev;
        B[u].next = b;
        if (B[b].prev != NIL)
            B[B[b].prev].next = u;
        else
            self->head = u;
        B[b].prev = u;
        B[b].off = roff;
        B[b].size = rem;
        if (!in_place)
            self->root = avl_insert(B, self->root, b);
        b = u;
    }
    B[b].state = ST_USED;
    ht_put(self, b);
    self->ht_count++;
    self->used += need;
    return PyLong_FromUnsignedLongLong(B[b].off);
}

/* Free block f (in the tree) grows to [off, off+size).  Its key only
 * increases, so it stays in place unless it now sorts after its successor. */
static void
tree_grow(AllocatorObject *self, uint32_t f, uint64_t off, uint64_t size)
{
    Block *B = self->blk;
    uint32_t succ = avl_successor(B, self->root, f);
    int in_place = succ == NIL || size < B[succ].size ||
                   (size == B[succ].size && off < B[succ].off);
    if (!in_place)
        self->root = avl_remove(B, self->root, f);
    B[f].off = off;
    B[f].size = size;
    if (!in_place)
        self->root = avl_insert(B, self->root, f);
}

/* Look up a USED block by offset object; sets KeyError/TypeError/... */
static int64_t
lookup_used(AllocatorObject *self, PyObject *arg)
{
    long long off;
    if (as_int64(arg, &off) < 0)
        return -1;
    int64_t slot = off < 0 ? -1 : ht_find(self, (uint64_t)off);
    if (slot < 0)
        PyErr_SetObject(PyExc_KeyError, arg);
    return slot;
}

PyDoc_STRVAR(free_doc,
"free(offset) -> int\n\n"
"Free the block at `offset` and return its (rounded) size.\n"
"KeyError if `offset` is not currently allocated (e.g. double free).");

static PyObject *
Allocator_free(AllocatorObject *self, PyObject *arg)
{
    int64_t slot = lookup_used(self, arg);
    if (slot < 0)
        return NULL;
    Block *B = self->blk;
    uint32_t b = self->ht[slot];
    uint64_t size = B[b].size;

    ht_delete_slot(self, (uint64_t)slot);
    self->ht_count--;
    self->used -= size;

    uint32_t p = B[b].prev, n = B[b].next;
    int pfree = p != NIL && B[p].state == ST_FREE;
    int nfree = n != NIL && B[n].state == ST_FREE;
    if (pfree && nfree) {
        /* p absorbs b and n. */
        self->root = avl_remove(B, self->root, n);
        self->nfree--;
        B[p].next = B[n].next;
        if (B[n].next != NIL)
            B[B[n].next].prev = p;
        tree_grow(self, p, B[p].off, B[p].size + size + B[n].size);
        pool_release(self, b);
        pool_release(self, n);
    }
    else if (pfree) {
        /* p absorbs b. */
        B[p].next = n;
        if (n != NIL)
            B[n].prev = p;
        tree_grow(self, p, B[p].off, B[p].size + size);
        pool_release(self, b);
    }
    else if (nfree) {
        /* n absorbs b (n keeps its tree node and takes b's offset). */
        B[n].prev = p;
        if (p != NIL)
            B[p].next = n;
        else
            self->head = n;
        tree_grow(self, n, B[b].off, B[n].size + size);
        pool_release(self, b);
    }
    else {
        B[b].state = ST_FREE;
        self->root = avl_insert(B, self->root, b);
        self->nfree++;
    }
    return PyLong_FromUnsignedLongLong(size);
}

PyDoc_STRVAR(size_of_doc,
"size_of(offset) -> int\n\n"
"Rounded size of the allocated block at `offset`; KeyError if unknown.");

static PyObject *
Allocator_size_of(AllocatorObject *self, PyObject *arg)
{
    int64_t slot = lookup_used(self, arg);
    if (slot < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->blk[self->ht[slot]].size);
}

PyDoc_STRVAR(largest_free_doc,
"largest_free() -> int\n\n"
"Size of the largest free block (0 if none).  O(log n).");

static PyObject *
Allocator_largest_free(AllocatorObject *self, PyObject *Py_UNUSED(ignored))
{
    uint32_t t = self->root;
    if (t == NIL)
        return PyLong_FromLong(0);
    while (self->blk[t].right != NIL)
        t = self->blk[t].right;
    return PyLong_FromUnsignedLongLong(self->blk[t].size);
}

/* Debug helper: O(n) walk verifying every invariant. */
static int
check_avl(const Block *B, uint32_t t, uint32_t lo, uint32_t hi, uint64_t *count, int *height)
{
    if (t == NIL) {
        *height = 0;
        return 0;
    }
    int hl, hr;
    if (B[t].state != ST_FREE)
        return -1;
    if (lo != NIL && !key_less(B, lo, t))
        return -1;
    if (hi != NIL && !key_less(B, t, hi))
        return -1;
    if (check_avl(B, B[t].left, lo, t, count, &hl) < 0)
        return -1;
    if (check_avl(B, B[t].right, t, hi, count, &hr) < 0)
        return -1;
    if (B[t].height != 1 + (hl > hr ? hl : hr) || hl - hr > 1 || hr - hl > 1)
        return -1;
    *height = B[t].height;
    (*count)++;
    return 0;
}

#define CHECK(cond, msg)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            PyErr_SetString(PyExc_AssertionError, msg);         \
            return NULL;                                        \
        }                                                       \
    } while (0)

PyDoc_STRVAR(check_doc,
"_check() -> None\n\n"
"Debug/test helper: verify all internal invariants in O(n); raises\n"
"AssertionError on corruption.");

static PyObject *
Allocator_check(AllocatorObject *self, PyObject *Py_UNUSED(ignored))
{
    const Block *B = self->blk;
    uint64_t pos = 0, used = 0, nused = 0, nfree = 0, tree_count = 0;
    uint32_t prev = NIL;
    int height;
    for (uint32_t b = self->head; b != NIL; prev = b, b = B[b].next) {
        CHECK(b < self->pool_cap, "block index out of range");
        CHECK(B[b].prev == prev, "broken prev link");
        CHECK(B[b].off == pos, "blocks do not tile the region");
        CHECK(B[b].size > 0 && (B[b].size & ((uint64_t)self->alignment - 1)) == 0,
              "bad block size");
        if (B[b].state == ST_USED) {
            nused++;
            used += B[b].size;
            int64_t s = ht_find(self, B[b].off);
            CHECK(s >= 0 && self->ht[s] == b, "used block missing from hash table");
        }
        else {
            CHECK(B[b].state == ST_FREE, "spare block in physical list");
            CHECK(prev == NIL || B[prev].state != ST_FREE, "adjacent free blocks");
            nfree++;
        }
        pos += B[b].size;
        CHECK(nused + nfree <= self->pool_cap, "cycle in physical list");
    }
    CHECK(pos == self->usable, "blocks do not cover the region");
    CHECK(used == self->used, "used counter mismatch");
    CHECK(nused == self->ht_count, "allocation count mismatch");
    CHECK(nfree == self->nfree, "free block count mismatch");
    CHECK(check_avl(B, self->root, NIL, NIL, &tree_count, &height) == 0, "AVL tree corrupt");
    CHECK(tree_count == nfree, "free tree size mismatch");
    uint64_t ht_entries = 0;
    for (uint64_t i = 0; i <= self->ht_mask; i++)
        if (self->ht[i] != NIL) {
            ht_entries++;
            CHECK(B[self->ht[i]].state == ST_USED, "hash table points at non-used block");
        }
    CHECK(ht_entries == self->ht_count, "hash table size mismatch");
    Py_RETURN_NONE;
}

static PyObject *
Allocator_get_used(AllocatorObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLongLong(self->used);
}

static PyObject *
Allocator_get_num_allocations(AllocatorObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLongLong(self->ht_count);
}

static PyObject *
Allocator_get_num_free_blocks(AllocatorObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLongLong(self->nfree);
}

static PyObject *
Allocator_repr(AllocatorObject *self)
{
    return PyUnicode_FromFormat("<zray._native.Allocator capacity=%lld alignment=%lld "
                                "used=%llu num_allocations=%llu>",
                                self->capacity, self->alignment,
                                (unsigned long long)self->used,
                                (unsigned long long)self->ht_count);
}

static PyMethodDef Allocator_methods[] = {
    {"alloc", (PyCFunction)Allocator_alloc, METH_O, alloc_doc},
    {"free", (PyCFunction)Allocator_free, METH_O, free_doc},
    {"size_of", (PyCFunction)Allocator_size_of, METH_O, size_of_doc},
    {"largest_free", (PyCFunction)Allocator_largest_free, METH_NOARGS, largest_free_doc},
    {"_check", (PyCFunction)Allocator_check, METH_NOARGS, check_doc},
    {NULL, NULL, 0, NULL}};

static PyMemberDef Allocator_members[] = {
    {"capacity", T_LONGLONG, offsetof(AllocatorObject, capacity), READONLY,
     "Region size in bytes, as passed to the constructor."},
    {"alignment", T_LONGLONG, offsetof(AllocatorObject, alignment), READONLY,
     "Alignment (power of two) of every offset and block size."},
    {NULL, 0, 0, 0, NULL}};

static PyGetSetDef Allocator_getset[] = {
    {"used", (getter)Allocator_get_used, NULL,
     "Bytes currently allocated (sum of rounded sizes).", NULL},
    {"num_allocations", (getter)Allocator_get_num_allocations, NULL,
     "Number of live allocations.", NULL},
    {"num_free_blocks", (getter)Allocator_get_num_free_blocks, NULL,
     "Number of free fragments (1 when fully coalesced and empty).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyDoc_STRVAR(Allocator_doc,
"Allocator(capacity, alignment=64)\n\n"
"Best-fit offset allocator for one region of `capacity` bytes.  Hands out\n"
"offsets aligned to `alignment` (a power of two); sizes are rounded up to\n"
"the alignment, and free neighbours coalesce.  alloc() returns -1 when\n"
"nothing fits.  Not thread-safe beyond the GIL.");

static PyTypeObject AllocatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zray._native.Allocator",
    .tp_basicsize = sizeof(AllocatorObject),
    .tp_itemsize = 0,
    .tp_dealloc = (destructor)Allocator_dealloc,
    .tp_repr = (reprfunc)Allocator_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Allocator_doc,
    .tp_methods = Allocator_methods,
    .tp_members = Allocator_members,
    .tp_getset = Allocator_getset,
    .tp_new = Allocator_new,
};

/* ------------------------------------------------------------------------ */
/* parallel_copy                                                            */
/* ------------------------------------------------------------------------ */

#define PARALLEL_THRESHOLD ((size_t)8 << 20) /* split copies above 8 MiB */
#define GIL_THRESHOLD ((size_t)64 << 10)     /* release the GIL from 64 KiB */
#define MAX_COPY_THREADS 64
#define MIN_CHUNK ((size_t)1 << 20)          /* at least 1 MiB per thread */

typedef struct {
    char *dst;
    const char *src;
    size_t n;
} CopyJob;

static void *
copy_worker(void *arg)
{
    CopyJob *j = (CopyJob *)arg;
    memcpy(j->dst, j->src, j->n);
    return NULL;
}

/* Runs without the GIL. */
static void
do_copy(char *dst, const char *src, size_t n, int nthreads)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (d < s + n && s < d + n) { /* overlapping buffers: memmove, 1 thread */
        memmove(dst, src, n);
        return;
    }
    if (n <= PARALLEL_THRESHOLD || nthreads <= 1) {
        memcpy(dst, src, n);
        return;
    }
    if ((size_t)nthreads > n / MIN_CHUNK)
        nthreads = (int)(n / MIN_CHUNK);

    CopyJob jobs[MAX_COPY_THREADS];
    pthread_t tids[MAX_COPY_THREADS];
    int started[MAX_COPY_THREADS];
    /* Chunk boundaries on 4 KiB multiples; the last chunk takes the rest. */
    size_t chunk = (n / (size_t)nthreads + 4095) & ~(size_t)4095;
    size_t pos = 0;
    int k = 0;
    while (pos < n && k < nthreads) {
        size_t len = (k == nthreads - 1 || n - pos < chunk) ? n - pos : chunk;
        jobs[k].dst = dst + pos;
        jobs[k].src = src + pos;
        jobs[k].n = len;
        pos += len;
        k++;
    }
    /* Jobs 1..k-1 on new threads, job 0 on this thread.  If a thread
     * cannot be created its job simply runs here. */
    for (int i = 1; i < k; i++)
        started[i] = pthread_create(&tids[i], NULL, copy_worker, &jobs[i]) == 0;
    copy_worker(&jobs[0]);
    for (int i = 1; i < k; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            copy_worker(&jobs[i]);
    }
}

static int
default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus < 4 ? (int)cpus : 4;
}

/* Get a C-contiguous buffer.  TypeError for non-buffers and for a read-only
 * `dst` (like file.readinto), ValueError for non-contiguous buffers. */
static int
get_contiguous(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES) < 0)
        return -1;
    if (writable && view->readonly) {
        PyErr_Format(PyExc_TypeError, "%s must be a writable buffer, not read-only %.100s",
                     name, Py_TYPE(obj)->tp_name);
        PyBuffer_Release(view);
        return -1;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous buffer", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(parallel_copy_doc,
"parallel_copy(dst, src, threads=0) -> int\n\n"
"Copy all bytes of the C-contiguous buffer `src` into the start of the\n"
"writable C-contiguous buffer `dst` with the GIL released.  Copies above\n"
"8 MiB are split across `threads` pthreads (0 = min(4, online CPUs)).\n"
"ValueError if len(dst) < len(src) (in bytes), threads < 0 or a buffer is\n"
"not C-contiguous; TypeError if dst is read-only or not a buffer.\n"
"Overlapping buffers are handled (single-threaded memmove).\n"
"Returns the number of bytes copied.");

static PyObject *
parallel_copy(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"dst", "src", "threads", NULL};
    PyObject *dst_obj, *src_obj, *threads_obj = NULL;
    long long threads = 0;
    Py_buffer dv, sv;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:parallel_copy", kwlist,
                                     &dst_obj, &src_obj, &threads_obj))
        return NULL;
    if (threads_obj != NULL && as_int64(threads_obj, &threads) < 0)
        return NULL;
    if (threads < 0) {
        PyErr_SetString(PyExc_ValueError, "threads must be >= 0");
        return NULL;
    }
    if (threads == 0)
        threads = default_threads();
    if (threads > MAX_COPY_THREADS)
        threads = MAX_COPY_THREADS;

    if (get_contiguous(dst_obj, &dv, 1, "dst") < 0)
        return NULL;
    if (get_contiguous(src_obj, &sv, 0, "src") < 0) {
        PyBuffer_Release(&dv);
        return NULL;
    }
    if (dv.len < sv.len) {
        PyErr_Format(PyExc_ValueError,
                     "destination too small: len(dst)=%zd < len(src)=%zd bytes",
                     dv.len, sv.len);
        PyBuffer_Release(&sv);
        PyBuffer_Release(&dv);
        return NULL;
    }
    size_t n = (size_t)sv.len;
    if (n >= GIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        do_copy((char *)dv.buf, (const char *)sv.buf, n, (int)threads);
        Py_END_ALLOW_THREADS
    }
    else if (n > 0) {
        do_copy((char *)dv.buf, (const char *)sv.buf, n, 1);
    }
    PyBuffer_Release(&sv);
    PyBuffer_Release(&dv);
    return PyLong_FromSize_t(n);
}

/* ------------------------------------------------------------------------ */
/* Module                                                                   */
/* ------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"parallel_copy", (PyCFunction)(void (*)(void))parallel_copy,
     METH_VARARGS | METH_KEYWORDS, parallel_copy_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zray._native",
    .m_doc = "Native helpers for zray: shared-memory offset allocator, parallel memcpy.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&AllocatorType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&AllocatorType);
    if (PyModule_AddObject(m, "Allocator", (PyObject *)&AllocatorType) < 0) {
        Py_DECREF(&AllocatorType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "PARALLEL_COPY_THRESHOLD", (long)PARALLEL_THRESHOLD) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
