// Restricted pickle machine (see pth_pickle.h). The semantics follow CPython's _pickle.c for the
// opcodes kept: MARK opens a new stack segment that pops may not reach below (a "stack
// underflow" otherwise), BINPUT/MEMOIZE share an object between the memo and the stack, REDUCE
// replaces the callable on the stack by its result. Opcode reference: CPython's
// Lib/pickletools.py. Everything torch.save writes for a state dict is protocol 2; the
// protocol 4/5 opcodes a state dict could contain (FRAME, short strings, MEMOIZE, STACK_GLOBAL)
// are read too.
#include "pth_pickle.h"

#include <cstdio>
#include <cstring>

#include "reader_util.h"

namespace vqm::detail::pickle {

namespace {

enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinUnicode = 'X',
  kEmptyList = ']',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kEmptyDict = '}',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

// Every opcode of pickle protocols 0-5, for the message that refuses one: the one-byte ASCII
// opcodes of protocols 0, 1 and 3 (kAsciiCodes[i] is the i-th word of kAsciiNames), then
// 0x80..0x98 in order.
constexpr char kAsciiCodes[] = "(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrst)uGBC";
constexpr const char *kAsciiNames =
    "MARK STOP POP POP_MARK DUP FLOAT INT BININT BININT1 LONG BININT2 NONE PERSID BINPERSID "
    "REDUCE STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE APPEND BUILD GLOBAL DICT "
    "EMPTY_DICT APPENDS GET BINGET INST LONG_BINGET LIST EMPTY_LIST OBJ PUT BINPUT LONG_BINPUT "
    "SETITEM TUPLE EMPTY_TUPLE SETITEMS BINFLOAT BINBYTES SHORT_BINBYTES";
constexpr const char *kHighNames =
    "PROTO NEWOBJ EXT1 EXT2 EXT4 TUPLE1 TUPLE2 TUPLE3 NEWTRUE NEWFALSE LONG1 LONG4 "
    "SHORT_BINUNICODE BINUNICODE8 BINBYTES8 EMPTY_SET ADDITEMS FROZENSET NEWOBJ_EX STACK_GLOBAL "
    "MEMOIZE FRAME BYTEARRAY8 NEXT_BUFFER READONLY_BUFFER";

// The i-th space-separated word of `words`, or "" if there are fewer.
std::string word(const char *words, size_t i) {
  const char *p = words;
  for (; i > 0 && p != nullptr; --i) {
    p = std::strchr(p, ' ');
    if (p != nullptr) ++p;
  }
  if (p == nullptr) return "";
  const char *end = std::strchr(p, ' ');
  return end ? std::string(p, end) : std::string(p);
}

// "" for a byte that is no opcode.
std::string op_name(uint8_t op) {
  if (op >= 0x80) return word(kHighNames, op - 0x80u);
  const char *at = op ? std::strchr(kAsciiCodes, op) : nullptr;
  return at ? word(kAsciiNames, static_cast<size_t>(at - kAsciiCodes)) : "";
}

std::string op_str(uint8_t op) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", op);
  const std::string name = op_name(op);
  return name.empty() ? std::string("byte ") + buf : name + " (" + buf + ")";
}

// torch's typed storages. The unsupported ones are known so that the error can name the tensor
// and its dtype instead of refusing the global.
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", "float32", 4, true, DType::f32},
    {"HalfStorage", "float16", 2, true, DType::f16},
    {"BFloat16Storage", "bfloat16", 2, true, DType::bf16},
    {"LongStorage", "int64", 8, true, DType::i64},
    {"IntStorage", "int32", 4, true, DType::i32},
    {"CharStorage", "int8", 1, true, DType::i8},
    {"ByteStorage", "uint8", 1, true, DType::u8},
    {"DoubleStorage", "float64", 8, false, DType::f32},
    {"ShortStorage", "int16", 2, false, DType::f32},
    {"BoolStorage", "bool", 1, false, DType::f32},
    {"ComplexFloatStorage", "complex64", 8, false, DType::f32},
    {"ComplexDoubleStorage", "complex128", 16, false, DType::f32},
};

// Python decodes pickle strings as UTF-8 with "surrogatepass": well-formed UTF-8 in which
// encoded surrogates (U+D800..U+DFFF) are allowed.
bool valid_utf8(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n;) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07u;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    i += len;
  }
  return true;
}

uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Value of(Object *o) {
  Value v;
  v.kind = o->kind;
  v.obj = o;
  return v;
}

Value scalar(Kind kind, int64_t i) {
  Value v;
  v.kind = kind;
  v.i = i;
  return v;
}

std::string num(uint64_t v) {
  return std::to_string(v);
}

}  // namespace

std::string describe(const Value &v) {
  switch (v.kind) {
    case Kind::none:
      return "None";
    case Kind::boolean:
      return v.i ? "a bool (True)" : "a bool (False)";
    case Kind::integer:
      return "an int (" + std::to_string(v.i) + ")";
    case Kind::floating:
      return "a float";
    case Kind::string:
      return "the string " + quote_name(std::string(v.s));
    case Kind::tuple:
      return "a tuple of " + num(v.obj->items.size());
    case Kind::list:
      return "a list of " + num(v.obj->items.size());
    case Kind::dict:
      return std::string(v.obj->ordered ? "an OrderedDict" : "a dict") + " of " +
             num(v.obj->items.size() / 2);
    case Kind::global:
      return "global " + quote_name(v.obj->name);
    case Kind::storage:
      return "a storage";
    case Kind::tensor:
      return "a tensor";
  }
  return "?";
}

Machine::Machine(std::string ctx, StorageLoader loader, const Bounds &bounds)
    : ctx_(std::move(ctx)), loader_(std::move(loader)), bounds_(bounds) {}

void Machine::bad(ErrorCode code, const std::string &msg) const {
  fail(code, ctx_ + " byte " + num(op_pos_) + ": " + msg);
}

const uint8_t *Machine::take(uint64_t n, const char *what) {
  if (n > n_ - pos_) {
    bad(ErrorCode::format, std::string(what) + " needs " + num(n) + " bytes, but the pickle ends " +
                               num(n_ - pos_) + " bytes later (truncated?)");
  }
  const uint8_t *q = p_ + pos_;
  pos_ += static_cast<size_t>(n);
  return q;
}

Object *Machine::make(Kind kind) {
  if (arena_.size() >= bounds_.objects) {
    bad(ErrorCode::limit,
        "more than " + num(bounds_.objects) + " objects (a bound of the pickle reader)");
  }
  arena_.push_back(std::make_unique<Object>());
  arena_.back()->kind = kind;
  return arena_.back().get();
}

void Machine::push(const Value &v) {
  if (stack_.size() >= bounds_.stack) {
    bad(ErrorCode::limit,
        "stack deeper than " + num(bounds_.stack) + " values (a bound of the pickle reader)");
  }
  stack_.push_back(v);
}

// Pops stop at the last MARK, as in CPython: a value below it belongs to an outer tuple/list.
void Machine::need(size_t n) {
  const size_t held = stack_.size() - (marks_.empty() ? 0 : marks_.back().first);
  if (held >= n) return;
  const std::string where = marks_.empty() ? "" : " above the last MARK";
  if (n == 1) {
    bad(ErrorCode::format,
        "stack underflow: " + op_str(op_) + " needs a value, the stack" + where + " is empty");
  }
  bad(ErrorCode::format, "stack underflow: " + op_str(op_) + " needs " + num(n) +
                             " values, the stack holds " + num(held) + where);
}

Value Machine::pop() {
  need(1);
  const Value v = stack_.back();
  stack_.pop_back();
  return v;
}

Value &Machine::top() {
  need(1);
  return stack_.back();
}

std::vector<Value> Machine::pop_mark() {
  if (marks_.empty()) bad(ErrorCode::format, op_str(op_) + " without a MARK before it");
  const size_t at = marks_.back().first;
  std::vector<Value> items(stack_.begin() + static_cast<std::ptrdiff_t>(at), stack_.end());
  stack_.resize(at);
  marks_.pop_back();
  return items;
}

std::vector<Value> Machine::pop_n(size_t n) {
  need(n);
  std::vector<Value> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
  stack_.resize(stack_.size() - n);
  return items;
}

// Counts values about to go into a container. The caller appends them without an exact reserve,
// which would copy a list on every APPEND; vector growth stays geometric.
void Machine::add_items(size_t n) {
  if (n > bounds_.items - items_) {
    bad(ErrorCode::limit, "containers hold more than " + num(bounds_.items) +
                              " values (a bound of the pickle reader)");
  }
  items_ += n;
}

// Picklers number memo entries 0, 1, 2, ...: those live in a vector. Any other key (a hostile
// LONG_BINPUT 4000000000) goes to a map, so no key makes the memo allocate more than one entry.
void Machine::memo_put(uint64_t key) {
  const Value v = top();
  if (key < memo_dense_.size()) {
    memo_dense_[static_cast<size_t>(key)] = v;
    return;
  }
  auto it = memo_sparse_.find(key);
  if (it != memo_sparse_.end()) {
    it->second = v;
    return;
  }
  if (memo_dense_.size() + memo_sparse_.size() >= bounds_.memo) {
    bad(ErrorCode::limit,
        "memo of more than " + num(bounds_.memo) + " entries (a bound of the pickle reader)");
  }
  if (key == memo_dense_.size()) {
    memo_dense_.push_back(v);
  } else {
    memo_sparse_.emplace(key, v);
  }
}

void Machine::memo_get(uint64_t key) {
  if (key < memo_dense_.size()) return push(memo_dense_[static_cast<size_t>(key)]);
  const auto it = memo_sparse_.find(key);
  if (it == memo_sparse_.end()) {
    bad(ErrorCode::format, op_str(op_) + " of memo key " + num(key) + ", which was never set");
  }
  push(it->second);
}

void Machine::push_string(uint64_t len, const char *op) {
  if (len > n_ - pos_) {
    bad(ErrorCode::format, std::string(op) + " string of " + num(len) +
                               " bytes runs past the end of the pickle (" + num(n_ - pos_) +
                               " bytes left)");
  }
  const uint8_t *s = take(len, op);
  if (!valid_utf8(s, static_cast<size_t>(len))) {
    bad(ErrorCode::format, std::string(op) + " string of " + num(len) + " bytes is not UTF-8");
  }
  Value v;
  v.kind = Kind::string;
  v.s = std::string_view(reinterpret_cast<const char *>(s), static_cast<size_t>(len));
  push(v);
}

// LONG1: n bytes of little-endian two's complement. Only what fits in 64 bits is read.
void Machine::push_long(uint64_t nbytes) {
  const uint8_t *b = take(nbytes, "LONG1");
  if (nbytes > 8) {
    bad(ErrorCode::unsupported,
        "LONG1 integer of " + num(nbytes) + " bytes does not fit in 64 bits");
  }
  uint64_t v = le(b, static_cast<int>(nbytes));
  if (nbytes > 0 && nbytes < 8 && (b[nbytes - 1] & 0x80)) v |= ~uint64_t{0} << (8 * nbytes);
  push(scalar(Kind::integer, static_cast<int64_t>(v)));
}

std::string_view Machine::read_line(const char *what) {
  const void *nl = std::memchr(p_ + pos_, '\n', n_ - pos_);
  if (nl == nullptr) {
    bad(ErrorCode::format, std::string("GLOBAL ") + what + " has no newline before the end of " +
                               "the pickle (truncated?)");
  }
  const size_t len = static_cast<size_t>(static_cast<const uint8_t *>(nl) - (p_ + pos_));
  const std::string_view line(reinterpret_cast<const char *>(p_ + pos_), len);
  pos_ += len + 1;
  return line;
}

// The allow-list. Anything else, however harmless it may look, is refused by name: a global is
// the pickle's way to call code, and this reader never does.
void Machine::push_global(std::string_view module, std::string_view name) {
  const std::string full = std::string(module) + " " + std::string(name);
  Callable callable = Callable::storage_type;
  const StorageType *type = nullptr;
  if (module == "collections" && name == "OrderedDict") {
    callable = Callable::ordered_dict;
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    callable = Callable::rebuild_tensor_v2;
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    callable = Callable::rebuild_parameter;
  } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
    callable = Callable::rebuild_parameter_with_state;
  } else if (module == "torch") {
    for (const auto &row : kStorageTypes)
      if (name == row.name) type = &row;
  }
  if (callable == Callable::storage_type && type == nullptr) {
    bad(ErrorCode::unsupported,
        "global " + quote_name(full) + " is not allowed (only tensor state dicts are read)");
  }
  Object *o = make(Kind::global);
  o->callable = callable;
  o->type = type;
  o->name = full;
  push(of(o));
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
// [, metadata]). Types are checked here; the numbers are checked by pth.cpp, which knows the
// tensor's name by then.
Value Machine::make_tensor(const Object &args) {
  const std::vector<Value> &a = args.items;
  if (a.size() != 6 && a.size() != 7) {
    bad(ErrorCode::format, "_rebuild_tensor_v2 takes 6 or 7 arguments, got " + num(a.size()));
  }
  static const struct {
    const char *name;
    Kind kind;
  } kArgs[] = {{"storage", Kind::storage},
               {"storage_offset", Kind::integer},
               {"size", Kind::tuple},
               {"stride", Kind::tuple},
               {"requires_grad", Kind::boolean},
               {"backward_hooks", Kind::dict}};
  for (size_t i = 0; i < 6; ++i) {
    if (a[i].kind != kArgs[i].kind) {
      bad(ErrorCode::format, "_rebuild_tensor_v2 argument " + num(i) + " (" + kArgs[i].name +
                                 ") is " + describe(a[i]));
    }
  }
  // Metadata marks tensors with conj/neg bits and the like: their bytes alone are not the values.
  if (a.size() == 7 && a[6].kind != Kind::none &&
      !(a[6].kind == Kind::dict && a[6].obj->items.empty())) {
    bad(ErrorCode::unsupported,
        "_rebuild_tensor_v2 with tensor metadata (" + describe(a[6]) + ") is not supported");
  }
  Object *t = make(Kind::tensor);
  add_items(4);
  t->items.assign(a.begin(), a.begin() + 4);
  return of(t);
}

void Machine::reduce() {
  const Value args = pop();
  Value &func = top();
  if (func.kind != Kind::global) {
    bad(ErrorCode::unsupported,
        "REDUCE of " + describe(func) + " is not allowed (only allowed globals are called)");
  }
  if (args.kind != Kind::tuple) {
    bad(ErrorCode::format,
        "REDUCE of " + describe(func) + " with arguments " + describe(args) + ", expected a tuple");
  }
  const Object &f = *func.obj;
  const std::vector<Value> &a = args.obj->items;
  switch (f.callable) {
    case Callable::ordered_dict: {
      // torch writes OrderedDict() and fills it with SETITEMS.
      if (!a.empty()) {
        bad(ErrorCode::unsupported, "OrderedDict with " + num(a.size()) +
                                        " arguments is not supported (only OrderedDict())");
      }
      Object *d = make(Kind::dict);
      d->ordered = true;
      func = of(d);
      return;
    }
    case Callable::rebuild_tensor_v2:
      func = make_tensor(*args.obj);
      return;
    case Callable::rebuild_parameter:
    case Callable::rebuild_parameter_with_state: {
      // A Parameter is its tensor plus autograd flags, which a reader of weights ignores.
      const bool plain = f.callable == Callable::rebuild_parameter;
      const size_t want = plain ? 3 : 4;
      if (a.size() != want || a[0].kind != Kind::tensor) {
        bad(ErrorCode::format,
            std::string(plain ? "_rebuild_parameter" : "_rebuild_parameter_with_state") +
                " takes " + num(want) + " arguments, the first a tensor; got " + describe(args) +
                (a.empty() ? "" : " starting with " + describe(a[0])));
      }
      func = a[0];
      return;
    }
    case Callable::storage_type:
      break;
  }
  bad(ErrorCode::unsupported, "REDUCE of " + describe(func) + " is not allowed");
}

// torch pickles an OrderedDict with its attributes as BUILD state ({'_metadata': ...}): they
// carry module versions, not weights, and are dropped. Nothing else may be BUILT.
void Machine::build() {
  const Value state = pop();
  const Value &inst = top();
  if (inst.kind == Kind::dict && inst.obj->ordered) return;
  bad(ErrorCode::unsupported, "BUILD of " + describe(inst) + " with " + describe(state) +
                                  " is not allowed (only an OrderedDict's attributes are)");
}

// BINPERSID with ('storage', storage_type, key, location, numel): the tensor bytes in the
// archive entry data/<key>. One key is one storage, whichever tensors share it.
void Machine::persistent_load() {
  const Value pid = pop();
  // A persistent id that was memoized and loaded again names the same storage: O(1), however
  // long its key.
  if (pid.kind == Kind::tuple && pid.obj->storage != nullptr) return push(of(pid.obj->storage));
  const std::vector<Value> *a = pid.kind == Kind::tuple ? &pid.obj->items : nullptr;
  if (a == nullptr || a->size() != 5 || (*a)[0].kind != Kind::string || (*a)[0].s != "storage") {
    bad(ErrorCode::unsupported, "persistent id " + describe(pid) +
                                    " is not a storage ('storage', type, key, location, numel)");
  }
  const Value &type = (*a)[1], &key = (*a)[2], &location = (*a)[3], &numel = (*a)[4];
  if (type.kind != Kind::global || type.obj->type == nullptr) {
    bad(ErrorCode::format, "storage type is " + describe(type) + ", expected a torch storage type");
  }
  if (key.kind != Kind::string || location.kind != Kind::string) {
    bad(ErrorCode::format, "storage key and location are " + describe(key) + " and " +
                               describe(location) + ", expected strings");
  }
  if (key.s.size() > bounds_.key_bytes) {
    bad(ErrorCode::limit, "storage key of " + num(key.s.size()) + " bytes is longer than " +
                              num(bounds_.key_bytes) + " (a bound of the pickle reader)");
  }
  if (numel.kind != Kind::integer || numel.i < 0) {
    bad(ErrorCode::format, "storage " + quote_name(std::string(key.s)) + " has " + describe(numel) +
                               " elements, expected an int >= 0");
  }
  const auto it = storages_.find(key.s);
  if (it != storages_.end()) {
    Object *s = it->second;
    if (s->type != type.obj->type || s->numel != numel.i) {
      bad(ErrorCode::format, "storage " + quote_name(std::string(key.s)) + " is declared as " +
                                 s->type->name + " of " + std::to_string(s->numel) +
                                 " elements and again as " + type.obj->type->name + " of " +
                                 std::to_string(numel.i));
    }
    pid.obj->storage = s;
    return push(of(s));
  }
  Object *s = make(Kind::storage);
  s->type = type.obj->type;
  s->key = key.s;
  s->numel = numel.i;
  loader_(*s);
  storages_.emplace(s->key, s);
  pid.obj->storage = s;
  push(of(s));
}

void Machine::setitems(std::vector<Value> items) {
  if (items.size() % 2 != 0) {
    bad(ErrorCode::format, "SETITEMS with an odd number of values (" + num(items.size()) + ")");
  }
  Value &d = top();
  if (d.kind != Kind::dict) {
    bad(ErrorCode::format, op_str(op_) + " on " + describe(d) + ", expected a dict");
  }
  add_items(items.size());
  d.obj->items.insert(d.obj->items.end(), items.begin(), items.end());
}

void Machine::append(std::vector<Value> items) {
  Value &l = top();
  if (l.kind != Kind::list) {
    bad(ErrorCode::format, op_str(op_) + " on " + describe(l) + ", expected a list");
  }
  add_items(items.size());
  l.obj->items.insert(l.obj->items.end(), items.begin(), items.end());
}

bool Machine::step_value(uint8_t op) {
  switch (op) {
    case kBinInt:
      push(scalar(Kind::integer, static_cast<int32_t>(le(take(4, "BININT"), 4))));
      return true;
    case kBinInt1:
      push(scalar(Kind::integer, *take(1, "BININT1")));
      return true;
    case kBinInt2:
      push(scalar(Kind::integer, static_cast<int64_t>(le(take(2, "BININT2"), 2))));
      return true;
    case kLong1:
      push_long(*take(1, "LONG1"));
      return true;
    case kNone:
      push(Value());
      return true;
    case kNewTrue:
    case kNewFalse:
      push(scalar(Kind::boolean, op == kNewTrue));
      return true;
    case kBinFloat: {
      const uint8_t *b = take(8, "BINFLOAT");  // big-endian, unlike everything else
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];
      Value v;
      v.kind = Kind::floating;
      std::memcpy(&v.f, &bits, sizeof v.f);
      push(v);
      return true;
    }
    case kBinUnicode:
      push_string(le(take(4, "BINUNICODE"), 4), "BINUNICODE");
      return true;
    case kShortBinUnicode:
      push_string(*take(1, "SHORT_BINUNICODE"), "SHORT_BINUNICODE");
      return true;
    case kBinUnicode8:
      push_string(le(take(8, "BINUNICODE8"), 8), "BINUNICODE8");
      return true;
    case kEmptyDict:
    case kEmptyList:
    case kEmptyTuple:
      push(of(make(op == kEmptyDict ? Kind::dict : op == kEmptyList ? Kind::list : Kind::tuple)));
      return true;
    default:
      return false;
  }
}

// Stack, memo and container opcodes.
bool Machine::step_stack(uint8_t op) {
  switch (op) {
    case kMark:
      if (marks_.size() >= bounds_.marks) {
        bad(ErrorCode::limit, "MARKs nested deeper than " + num(bounds_.marks) +
                                  " levels (a bound of the pickle reader)");
      }
      marks_.emplace_back(stack_.size(), op_pos_);
      return true;
    case kTuple:
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      std::vector<Value> items = op == kTuple ? pop_mark() : pop_n(op - kTuple1 + 1u);
      Object *t = make(Kind::tuple);
      add_items(items.size());
      t->items = std::move(items);
      push(of(t));
      return true;
    }
    case kBinPut:
      memo_put(*take(1, "BINPUT"));
      return true;
    case kLongBinPut:
      memo_put(le(take(4, "LONG_BINPUT"), 4));
      return true;
    case kMemoize:
      memo_put(memo_dense_.size() + memo_sparse_.size());
      return true;
    case kBinGet:
      memo_get(*take(1, "BINGET"));
      return true;
    case kLongBinGet:
      memo_get(le(take(4, "LONG_BINGET"), 4));
      return true;
    case kSetItem: {
      const Value v = pop(), k = pop();
      setitems({k, v});
      return true;
    }
    case kSetItems:
      setitems(pop_mark());
      return true;
    case kAppend:
      append({pop()});
      return true;
    case kAppends:
      append(pop_mark());
      return true;
    default:
      return false;
  }
}

bool Machine::step(uint8_t op) {
  if (step_value(op) || step_stack(op)) return true;
  switch (op) {
    case kProto: {
      const uint8_t v = *take(1, "PROTO");
      if (v < 2 || v > 5) {
        bad(ErrorCode::unsupported, "pickle protocol " + num(v) +
                                        " is not supported (torch.save writes 2; 2 to 5 are read)");
      }
      return true;
    }
    case kFrame: {  // protocol 4 framing only batches reads: check the length, then ignore it
      const uint64_t len = le(take(8, "FRAME"), 8);
      if (len > n_ - pos_) {
        bad(ErrorCode::format, "FRAME of " + num(len) + " bytes runs past the end of the pickle (" +
                                   num(n_ - pos_) + " bytes left)");
      }
      return true;
    }
    case kGlobal: {
      const std::string_view module = read_line("module");
      push_global(module, read_line("name"));
      return true;
    }
    case kStackGlobal: {
      const Value name = pop(), module = pop();
      if (name.kind != Kind::string || module.kind != Kind::string) {
        bad(ErrorCode::format, "STACK_GLOBAL of " + describe(module) + " and " + describe(name) +
                                   ", expected two strings");
      }
      push_global(module.s, name.s);
      return true;
    }
    case kReduce:
      reduce();
      return true;
    case kBuild:
      build();
      return true;
    case kBinPersId:
      persistent_load();
      return true;
    case kStop:
      return false;
    default:
      if (op_name(op).empty()) bad(ErrorCode::format, op_str(op) + " is not a pickle opcode");
      bad(ErrorCode::unsupported,
          "opcode " + op_str(op) + " is not allowed (only tensor state dicts are read)");
  }
}

Value Machine::finish() {
  if (!marks_.empty()) {
    bad(ErrorCode::format,
        "STOP with the MARK at byte " + num(marks_.back().second) + " still open");
  }
  if (stack_.size() != 1) {
    bad(ErrorCode::format, "STOP with " + num(stack_.size()) + " values on the stack, expected 1");
  }
  if (pos_ != n_) {
    bad(ErrorCode::format, num(n_ - pos_) + " bytes follow STOP");
  }
  return stack_[0];
}

Value Machine::run(const uint8_t *p, size_t n) {
  p_ = p;
  n_ = n;
  pos_ = 0;
  for (;;) {
    op_pos_ = pos_;
    if (pos_ == n_) {
      bad(ErrorCode::format,
          "the pickle ends without STOP after " + num(n_) + " bytes (truncated?)");
    }
    op_ = p_[pos_++];
    if (!step(op_)) return finish();
  }
}

}  // namespace vqm::detail::pickle
