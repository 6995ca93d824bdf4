// A restricted pickle machine for the data.pkl of a .pth state dict. It never imports or calls
// anything: opcodes outside an allow-list are refused, and the few allowed globals (OrderedDict,
// torch's tensor rebuild functions and storage types) are interpreted here, by name. The result
// is a graph of plain values; pth.cpp turns it into tensors. Internal to runtime/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "error.h"
#include "tensor.h"

namespace vqm::detail::pickle {

enum class Kind : uint8_t {
  none,
  boolean,
  integer,
  floating,
  string,
  tuple,
  list,
  dict,
  global,
  storage,
  tensor
};

struct Object;

// Scalars are held inline; strings are views into the pickle bytes (which the caller keeps
// alive as long as the values); containers, globals, storages and tensors are Objects owned by
// the Machine that made them.
struct Value {
  Kind kind = Kind::none;
  union {
    int64_t i;  // integer; boolean (0 or 1)
    double f;
    Object *obj;
  };
  std::string_view s;  // string
  Value() : i(0) {}
};

// torch's typed storages ("torch FloatStorage"): the element type of a tensor's bytes.
struct StorageType {
  const char *name;        // FloatStorage
  const char *torch_name;  // float32, as torch prints dtypes
  uint32_t elem_size;
  bool supported;  // has a vqm DType
  DType dtype;
};

enum class Callable : uint8_t {
  ordered_dict,
  rebuild_tensor_v2,
  rebuild_parameter,
  rebuild_parameter_with_state,
  storage_type,  // not callable: appears only inside a storage's persistent id
};

struct Object {
  Kind kind = Kind::none;
  bool ordered = false;  // dict made by collections.OrderedDict (BUILD may set its attributes)
  Callable callable = Callable::ordered_dict;  // global
  const StorageType *type = nullptr;           // global of a storage type; storage
  std::string name;                            // global: "module name", for messages
  // tuple, list; dict: key0, value0, key1, value1, ...; tensor: storage, storage_offset, size,
  // stride (the first four arguments of _rebuild_tensor_v2, types checked).
  std::vector<Value> items;
  std::string_view key;           // storage: its key (the entry data/<key> holds its bytes)
  int64_t numel = 0;              // storage: elements
  const uint8_t *data = nullptr;  // storage: its bytes, set by the StorageLoader
  Object *storage = nullptr;      // tuple used as a persistent id: the storage it named
};

// Bounds on the machine's memory, each checked before the step that would pass it. Sized for
// Limits::max_tensors (100 000) tensors: torch writes about 8 objects, 20 items and 8 memo
// entries per tensor, and its pickles nest 4 MARKs deep.
struct Bounds {
  size_t stack = size_t{1} << 20;    // values on the stack
  size_t marks = 64;                 // open MARKs
  size_t memo = size_t{1} << 22;     // memo entries
  size_t objects = size_t{1} << 21;  // containers, globals, storages, tensors
  size_t items = size_t{1} << 23;    // values held by containers
  size_t key_bytes = 256;            // one storage key (torch writes decimal numbers)
};

// Called once per distinct storage key, with type, key and numel set: sets `data`, or throws
// vqm::Error if the archive has no matching bytes.
using StorageLoader = std::function<void(Object &storage)>;

class Machine {
 public:
  // `ctx` starts every message ("x.pth: pickle 'archive/data.pkl'").
  Machine(std::string ctx, StorageLoader loader, const Bounds &bounds = Bounds());
  // Runs the pickle to its STOP and returns the object STOP pops. The values (and strings in
  // `p`) stay valid while the Machine and `p` live. Throws vqm::Error: format for a broken
  // pickle, unsupported for opcodes and globals outside the allow-list, limit for a Bound.
  Value run(const uint8_t *p, size_t n);

 private:
  [[noreturn]] void bad(ErrorCode code, const std::string &msg) const;
  const uint8_t *take(uint64_t n, const char *what);
  Object *make(Kind kind);
  void push(const Value &v);
  void need(size_t n);  // throws unless n values are above the last MARK
  Value pop();
  Value &top();
  std::vector<Value> pop_mark();
  std::vector<Value> pop_n(size_t n);
  void add_items(size_t n);
  void memo_put(uint64_t key);
  void memo_get(uint64_t key);
  void push_string(uint64_t len, const char *op);
  void push_long(uint64_t nbytes);
  void push_global(std::string_view module, std::string_view name);
  std::string_view read_line(const char *what);
  void reduce();
  void build();
  void persistent_load();
  void setitems(std::vector<Value> items);
  void append(std::vector<Value> items);
  bool step_value(uint8_t op);  // opcodes that push a scalar or a string; false if not one
  bool step_stack(uint8_t op);  // stack, memo and container opcodes; false if not one
  bool step(uint8_t op);        // false at STOP
  Value finish();
  Value make_tensor(const Object &args);

  std::string ctx_;
  StorageLoader loader_;
  Bounds bounds_;
  const uint8_t *p_ = nullptr;
  size_t n_ = 0;
  size_t pos_ = 0;
  size_t op_pos_ = 0;  // where the current opcode starts, for messages
  uint8_t op_ = 0;     // the current opcode
  std::vector<Value> stack_;
  std::vector<std::pair<size_t, size_t>> marks_;  // stack size, byte of the MARK
  std::vector<Value> memo_dense_;                 // keys 0..n-1, as picklers assign them
  std::unordered_map<uint64_t, Value> memo_sparse_;
  std::unordered_map<std::string_view, Object *> storages_;
  std::vector<std::unique_ptr<Object>> arena_;
  size_t items_ = 0;
};

// "an int (5)", "a tuple of 3", "global 'torch FloatStorage'": for messages.
std::string describe(const Value &v);

}  // namespace vqm::detail::pickle
