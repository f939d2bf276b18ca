// Weights I/O: safetensors and JSON round trips, dtype conversion against known bit patterns,
// a file written by Python, every malformed-input case, all-or-nothing loading, atomic writes.
#include <sys/wait.h>

#include <cmath>
#include <cstring>

#include "tests/testing.h"
#include "tests/weights_testing.h"
#include "weights/checkpoint.h"
#include "weights/json_tensors.h"
#include "weights/load.h"
#include "weights/safetensors.h"

using namespace dl;
using namespace dl::testing;
using Catch::Matchers::Contains;

namespace {

NamedTensors sample_tensors() {
  Rng rng(3);
  return {
      {"conv1.weight", Tensor::randn({4, 3, 3, 3}, rng)},
      {"bn.running_var", Tensor::uniform({4}, rng, 0.5, 2.0)},
      {"labels", Tensor::from_vector<int32_t>({-7, 0, 2147483647, -2147483647 - 1, 5, 6}, {2, 3})},
      {"image", Tensor::from_vector<uint8_t>({0, 1, 128, 255}, {1, 1, 2, 2})},
      {"scalar", Tensor::from_vector<float>({1e-39f}, {})},  // a subnormal float
      {"empty", Tensor::empty({0, 3})},
  };
}

void require_same(const NamedTensors& a, const NamedTensors& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << a[i].first);
    REQUIRE(a[i].first == b[i].first);
    REQUIRE(a[i].second.dtype() == b[i].second.dtype());
    REQUIRE(a[i].second.shape() == b[i].second.shape());
    const Tensor x = a[i].second.to(Device::CPU), y = b[i].second.to(Device::CPU);
    REQUIRE(std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0);
  }
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

TEST_CASE("safetensors round trip F32/I32/U8, scalar and empty tensors, metadata", "[weights]") {
  TempDir dir;
  const NamedTensors ts = sample_tensors();
  write_safetensors(dir / "a.safetensors", ts, {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}});
  std::map<std::string, std::string> meta;
  const NamedTensors back = read_safetensors(dir / "a.safetensors", &meta);
  require_same(ts, back);  // file order = write order
  REQUIRE(meta.size() == 2);
  REQUIRE(meta["note"] == "caf\xc3\xa9 \"quoted\"");
  REQUIRE(read_safetensors_metadata(dir / "a.safetensors") == meta);

  // The data starts 8-byte aligned.
  const std::string raw = read_bytes(dir / "a.safetensors");
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  REQUIRE((8 + n) % 8 == 0);
  REQUIRE(raw[8 + n - 1] != '\0');
}

TEST_CASE("safetensors F64 tensors are written as F64 and read as F32", "[weights]") {
  TempDir dir;
  Tensor d = Tensor::from_vector<double>({0.1, -3.5, 1e300}, {3});
  write_safetensors(dir / "d.safetensors", {{"d", d}});
  auto back = read_safetensors(dir / "d.safetensors");
  REQUIRE(back[0].second.dtype() == DType::F32);
  auto v = back[0].second.to_vector<float>();
  REQUIRE(v[0] == 0.1f);
  REQUIRE(v[1] == -3.5f);
  REQUIRE(std::isinf(v[2]));
}

TEST_CASE("JSON round trip is bit-exact for F32 and exact for I32/U8", "[weights]") {
  TempDir dir;
  const NamedTensors ts = sample_tensors();
  write_json_tensors(dir / "a.json", ts);
  require_same(ts, read_json_tensors(dir / "a.json"));
}

TEST_CASE("safetensors -> JSON -> safetensors gives identical bytes", "[weights]") {
  TempDir dir;
  write_safetensors(dir / "a.safetensors", sample_tensors());
  write_json_tensors(dir / "b.json", read_safetensors(dir / "a.safetensors"));
  write_safetensors(dir / "c.safetensors", read_json_tensors(dir / "b.json"));
  REQUIRE(read_bytes(dir / "a.safetensors") == read_bytes(dir / "c.safetensors"));
  // read_weights / write_weights choose the format by extension.
  write_weights(dir / "d.json", read_weights(dir / "c.safetensors"));
  require_same(read_weights(dir / "d.json"), sample_tensors());
  REQUIRE_THAT(error_of([&] { read_weights(dir / "x.bin"); }), Contains("unknown extension"));
}

TEST_CASE("F16 and BF16 bit patterns convert exactly", "[weights]") {
  struct Case {
    uint16_t bits;
    float want;
  };
  const Case f16[] = {{0x3C00, 1.0f},
                      {0xC000, -2.0f},
                      {0x7BFF, 65504.0f},
                      {0x0001, 0x1p-24f},
                      {0x03FF, 1023 * 0x1p-24f},
                      {0x0400, 0x1p-14f},
                      {0x3555, 0.333251953125f},
                      {0x8000, -0.0f},
                      {0x7C00, INFINITY},
                      {0xFC00, -INFINITY}};
  for (const auto& c : f16) {
    INFO("f16 0x" << std::hex << c.bits);
    REQUIRE(bits_of(f16_to_f32(c.bits)) == bits_of(c.want));
  }
  REQUIRE(std::isnan(f16_to_f32(0x7E00)));
  REQUIRE(std::isnan(f16_to_f32(0xFC01)));
  const Case bf16[] = {{0x3F80, 1.0f},  {0x4049, 3.140625f}, {0xC2F7, -123.5f},     {0x0001, 0x1p-133f},
                       {0x8000, -0.0f}, {0x7F80, INFINITY},  {0xFF7F, -0x1.fep127f}};
  for (const auto& c : bf16) {
    INFO("bf16 0x" << std::hex << c.bits);
    REQUIRE(bits_of(bf16_to_f32(c.bits)) == bits_of(c.want));
  }
  REQUIRE(std::isnan(bf16_to_f32(0x7FC0)));
}

TEST_CASE("a safetensors file written by Python (json + struct + numpy): every dtype", "[weights][python]") {
  TempDir dir;
  // The script builds the file by hand, the way the safetensors library lays it out (header
  // keys sorted, not in data order), plus every F16 bit pattern and numpy's float32 of each.
  const std::string script = R"PY(
import json, struct, sys
import numpy as np
out = sys.argv[1]
tensors = {
  "a.f32": ("F32", [2, 2], np.array([1.5, -2.25, 3e-8, 1e30], dtype="<f4").tobytes()),
  "b.f16": ("F16", [3], np.array([1.0, -0.5, 65504.0], dtype="<f2").tobytes()),
  "c.bf16": ("BF16", [2], struct.pack("<HH", 0x3F80, 0xC2F7)),
  "d.f64": ("F64", [2], np.array([0.1, -7.0], dtype="<f8").tobytes()),
  "e.i32": ("I32", [3], np.array([-1, 0, 123456], dtype="<i4").tobytes()),
  "f.u8": ("U8", [2, 1], bytes([7, 250])),
  "g.i64": ("I64", [2], np.array([-5, 2**31 - 1], dtype="<i8").tobytes()),
  "h.bool": ("BOOL", [2], bytes([0, 1])),
  "z.all_f16": ("F16", [65536], np.arange(65536, dtype="<u2").tobytes()),
  "z.all_f16_as_f32": ("F32", [65536], np.arange(65536, dtype="<u2").view("<f2").astype("<f4").tobytes()),
}
# data in reverse name order, so data order != header order
header, data = {"__metadata__": {"format": "pt"}}, b""
for name in sorted(tensors, reverse=True):
  dt, shape, raw = tensors[name]
  header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
  data += raw
h = json.dumps(header, sort_keys=True).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(out, "wb").write(struct.pack("<Q", len(h)) + h + data)
)PY";
  write_bytes(dir / "make.py", script);
  if (!python_has("numpy")) return;
  REQUIRE(run_python(dir / "make.py", dir / "py.safetensors"));
  std::map<std::string, std::string> meta;
  NamedTensors ts = read_safetensors(dir / "py.safetensors", &meta);
  REQUIRE(meta.at("format") == "pt");
  REQUIRE(ts.size() == 10);
  REQUIRE(ts[0].first == "z.all_f16_as_f32");  // data order
  auto get = [&](const std::string& n) {
    Tensor t = find_tensor(ts, n);
    REQUIRE(t.defined());
    return t;
  };
  REQUIRE(get("a.f32").to_vector<float>() == std::vector<float>{1.5f, -2.25f, 3e-8f, 1e30f});
  REQUIRE(get("a.f32").shape() == Shape{2, 2});
  REQUIRE(get("b.f16").to_vector<float>() == std::vector<float>{1.0f, -0.5f, 65504.0f});
  REQUIRE(get("c.bf16").to_vector<float>() == std::vector<float>{1.0f, -123.5f});
  REQUIRE(get("d.f64").to_vector<float>() == std::vector<float>{0.1f, -7.0f});
  REQUIRE(get("e.i32").to_vector<int32_t>() == std::vector<int32_t>{-1, 0, 123456});
  REQUIRE(get("f.u8").to_vector<uint8_t>() == std::vector<uint8_t>{7, 250});
  REQUIRE(get("g.i64").to_vector<int32_t>() == std::vector<int32_t>{-5, 2147483647});
  REQUIRE(get("h.bool").to_vector<uint8_t>() == std::vector<uint8_t>{0, 1});
  // Every F16 pattern against numpy's conversion, bit for bit (NaNs: both NaN).
  auto ours = get("z.all_f16").to_vector<float>();
  auto ref = get("z.all_f16_as_f32").to_vector<float>();
  int64_t bad = -1;
  for (int64_t i = 0; i < 65536 && bad < 0; ++i) {
    const bool both_nan = std::isnan(ours[i]) && std::isnan(ref[i]);
    if (!both_nan && bits_of(ours[i]) != bits_of(ref[i])) bad = i;
  }
  INFO("first F16 pattern that differs from numpy: " << bad);
  REQUIRE(bad == -1);
}

TEST_CASE("Python reads what we write (json + struct + numpy)", "[weights][python]") {
  TempDir dir;
  write_safetensors(dir / "ours.safetensors", sample_tensors(), {{"k", "v"}});
  const std::string script = R"PY(
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
assert (8 + n) % 8 == 0
h = json.loads(raw[8:8 + n])
assert h["__metadata__"] == {"k": "v"}
data = raw[8 + n:]
def get(name, dt):
  b, e = h[name]["data_offsets"]
  return np.frombuffer(data[b:e], dtype=dt).reshape(h[name]["shape"])
assert get("labels", "<i4").tolist() == [[-7, 0, 2147483647], [-2147483648, 5, 6]]
assert get("image", "u1").shape == (1, 1, 2, 2)
assert h["conv1.weight"]["dtype"] == "F32" and h["conv1.weight"]["shape"] == [4, 3, 3, 3]
assert get("scalar", "<f4").shape == () and get("scalar", "<f4") == np.float32(1e-39)
assert h["empty"]["shape"] == [0, 3]
)PY";
  write_bytes(dir / "check.py", script);
  if (!python_has("numpy")) return;
  REQUIRE(run_python(dir / "check.py", dir / "ours.safetensors"));
}

TEST_CASE("malformed safetensors files are rejected with the file and tensor named", "[weights]") {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  auto err = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    return error_of([&] { read_safetensors(path); });
  };
  const std::string f8(8, '\0');  // 2 floats of data

  SECTION("too short for the length") {
    auto e = err("abc");
    REQUIRE_THAT(e, Contains("bad.safetensors") && Contains("too short"));
  }
  SECTION("header length past the end of the file") {
    std::string b = safetensors_bytes("{}", "");
    b[0] = 100;
    REQUIRE_THAT(err(b), Contains("header length 100 runs past the end of the file"));
  }
  SECTION("malformed JSON header, with the parser's position") {
    auto e = err(safetensors_bytes(R"({"a": {"dtype": "F32", )", f8));
    REQUIRE_THAT(e, Contains("malformed JSON header") && Contains("column"));
  }
  SECTION("header JSON is not an object") {
    REQUIRE_THAT(err(safetensors_bytes("[1, 2]   ", "")), Contains("does not start with '{'"));
  }
  SECTION("unknown dtype") {
    auto e = err(safetensors_bytes(R"({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", f8));
    REQUIRE_THAT(e, Contains("tensor 'w'") && Contains("unknown dtype \"F33\""));
  }
  SECTION("valid but unsupported dtype") {
    auto e = err(safetensors_bytes(R"({"w": {"dtype": "I16", "shape": [4], "data_offsets": [0, 8]}})", f8));
    REQUIRE_THAT(e, Contains("tensor 'w'") && Contains("unsupported dtype \"I16\""));
  }
  SECTION("offsets past the end of the data") {
    auto e = err(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", f8));
    REQUIRE_THAT(e, Contains("tensor 'w'") && Contains("run past the end of the data"));
  }
  SECTION("offsets not matching shape x dtype size") {
    auto e = err(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", f8));
    REQUIRE_THAT(e, Contains("tensor 'w'") && Contains("hold 8 bytes, but F32[3] needs 12"));
  }
  SECTION("overlapping tensors") {
    auto e = err(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                   f8));
    REQUIRE_THAT(e, Contains("'b'") && Contains("overlap tensor 'a'"));
  }
  SECTION("a gap between tensors") {
    auto e = err(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", f8));
    REQUIRE_THAT(e, Contains("'a'") && Contains("gap of 4"));
  }
  SECTION("reversed offsets, negative shape, missing fields, duplicates, bad metadata") {
    REQUIRE_THAT(
        err(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", f8)),
        Contains("reversed"));
    REQUIRE_THAT(
        err(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", f8)),
        Contains("not a non-negative integer"));
    REQUIRE_THAT(err(safetensors_bytes(R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", f8)),
                 Contains("tensor 'a'") && Contains("\"shape\""));
    REQUIRE_THAT(err(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                       f8)),
                 Contains("'a' twice"));
    REQUIRE_THAT(err(safetensors_bytes(R"({"__metadata__": {"x": 1}})", "")), Contains("not a string"));
    REQUIRE_THAT(err(safetensors_bytes(
                     R"({"a": {"dtype": "F32", "shape": [1,1,1,1,1,2], "data_offsets": [0, 8]}})", f8)),
                 Contains("6 dims"));
  }
  SECTION("a truncated file") {
    write_safetensors(path, sample_tensors());
    std::string full = read_bytes(path);
    auto e = err(full.substr(0, full.size() - 5));
    REQUIRE_THAT(e, Contains("bad.safetensors") && Contains("truncated"));
    // Trailing bytes are rejected too.
    REQUIRE_THAT(err(full + "xyz"), Contains("trailing bytes"));
  }
  SECTION("a missing file") {
    REQUIRE_THAT(error_of([&] { read_safetensors(dir / "nope.safetensors"); }),
                 Contains("nope.safetensors") && Contains("No such file"));
  }
  SECTION("I64 out of I32 range") {
    int64_t v[1] = {int64_t(1) << 40};
    auto e = err(safetensors_bytes(R"({"n": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})",
                                   std::string(reinterpret_cast<const char*>(v), 8)));
    REQUIRE_THAT(e, Contains("tensor 'n'") && Contains("does not fit in I32"));
  }
}

TEST_CASE("malformed JSON tensor dumps are rejected", "[weights]") {
  auto err = [](const std::string& text) { return error_of([&] { parse_json_tensors(text, "t.json"); }); };
  REQUIRE_THAT(err(R"({"a": {"shape": [2], "data": [1, 2]]})"),
               Contains("t.json") && Contains("malformed JSON at byte"));
  REQUIRE_THAT(err(R"({"a": {"shape": [2, 2], "dtype": "F32", "data": [1, 2, 3]}})"),
               Contains("tensor 'a'") && Contains("data has 3 values but shape [2, 2] needs 4"));
  REQUIRE_THAT(err(R"({"a": {"shape": [1], "dtype": "Q8", "data": [1]}})"), Contains("unknown dtype \"Q8\""));
  REQUIRE_THAT(err(R"({"a": {"shape": [1], "dtype": "U8", "data": [256]}})"), Contains("not a valid U8"));
  REQUIRE_THAT(err(R"({"a": {"shape": [1], "dtype": "I32", "data": [1.5]}})"), Contains("not a valid I32"));
  REQUIRE_THAT(err(R"({"a": {"shape": [1], "data": ["x"]}})"), Contains("not a number"));
  REQUIRE_THAT(err(R"({"a": {"shape": [1], "data": [1]}, "a": {"shape": [1], "data": [1]}})"),
               Contains("appears twice"));
  REQUIRE_THAT(err(R"([1, 2])"), Contains("not an object"));
  // dtype defaults to F32; F64 reads as F32.
  auto ok = parse_json_tensors(
      R"({"x": {"shape": [2], "data": [0.5, 2]}, "y": {"shape": [], "dtype": "F64", "data": [0.1]}})");
  REQUIRE(ok[0].second.to_vector<float>() == std::vector<float>{0.5f, 2.0f});
  REQUIRE(ok[1].second.to_vector<float>() == std::vector<float>{0.1f});
  // NaN cannot be written.
  REQUIRE_THAT(error_of([] {
                 json_tensors_to_string({{"n", Tensor::full({2}, NAN)}});
               }),
               Contains("tensor 'n'") && Contains("index 0"));
}

TEST_CASE("load_state reports every problem at once and loads nothing", "[weights]") {
  NamedTensors model = {{"a", Tensor::zeros({2, 3})},
                        {"b", Tensor::zeros({4})},
                        {"c", Tensor::zeros({1})},
                        {"idx", Tensor::zeros({2}, DType::I32)}};
  NamedTensors src = {{"a", Tensor::ones({2, 3})},
                      {"b", Tensor::ones({5})},
                      {"idx", Tensor::ones({2})},
                      {"extra", Tensor::ones({7, 7})}};
  const std::string e = error_of([&] { load_state(model, src, "w.safetensors"); });
  INFO(e);
  REQUIRE_THAT(e, Contains("w.safetensors") && Contains("4 problems") && Contains("nothing was loaded"));
  REQUIRE_THAT(e, Contains("missing: c [1]"));
  REQUIRE_THAT(e, Contains("unexpected: extra [7, 7]"));
  REQUIRE_THAT(e, Contains("shape mismatch: b: model [4], source [5]"));
  REQUIRE_THAT(e, Contains("dtype mismatch: idx: model I32, source F32"));
  REQUIRE(model[0].second.to_vector<float>() == std::vector<float>(6, 0.0f));  // nothing copied

  // Non-strict: missing/unexpected skipped, shape mismatches still fatal.
  REQUIRE_THAT(error_of([&] { load_state(model, src, "w", false); }), Contains("2 problems"));
  NamedTensors ok_src = {{"a", Tensor::ones({2, 3})}, {"zzz", Tensor::ones({1})}};
  load_state(model, ok_src, "w", false);
  REQUIRE(model[0].second.to_vector<float>() == std::vector<float>(6, 1.0f));

  // Strict success, in place (the model's tensor objects keep their identity), F32 -> F64.
  NamedTensors m2 = {{"x", Tensor::zeros({3}, DType::F64)}};
  Tensor keep = m2[0].second;
  load_state(m2, {{"x", Tensor::from_vector<float>({1, 2, 3}, {3})}}, "w");
  REQUIRE(keep.to_vector<double>() == std::vector<double>{1, 2, 3});
}

TEST_CASE("a failed write leaves the previous file intact and says why", "[weights]") {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  write_safetensors(path, sample_tensors());
  const std::string before = read_bytes(path);
  Rng rng(1);
  NamedTensors big = {{"big", Tensor::randn({1000}, rng)}};

  SECTION("disk full in the middle of the data") {
    detail::fail_next_write_after(100);
    const std::string e = error_of([&] { write_safetensors(path, big); });
    REQUIRE_THAT(e, Contains("w.safetensors") && Contains("No space left") && Contains("unchanged"));
    REQUIRE(read_bytes(path) == before);
    // The JSON writer goes through the same path.
    detail::fail_next_write_after(10);
    REQUIRE_THAT(error_of([&] { write_json_tensors(dir / "w.json", big); }), Contains("No space left"));
  }
  SECTION("the target is a folder") {
    REQUIRE_THAT(error_of([&] { write_safetensors(dir.path, big); }), Contains("renaming"));
  }
  SECTION("a folder that does not exist") {
    REQUIRE_THAT(error_of([&] { write_safetensors(dir / "no/such/dir/w.safetensors", big); }),
                 Contains("No such file or directory"));
  }
  SECTION("invalid tensors are rejected before the file is touched") {
    REQUIRE_THAT(error_of([&] {
                   write_safetensors(path, {{"a", Tensor::ones({1})}, {"a", Tensor::ones({1})}});
                 }),
                 Contains("appears twice"));
    REQUIRE_THAT(error_of([&] {
                   write_safetensors(path, {{"__metadata__", Tensor::ones({1})}});
                 }),
                 Contains("reserved"));
  }
  REQUIRE(read_bytes(path) == before);
  // No temporary files are left behind.
  REQUIRE(std::system(("test -z \"$(ls '" + dir.path + "' | grep tmp)\"").c_str()) == 0);
  // And a later write succeeds.
  write_safetensors(path, big);
  require_same(read_safetensors(path), big);
}

TEST_CASE("CUDA tensors are copied to the host for writing and loaded in place", "[weights][cuda]") {
  DL_REQUIRE_GPU_OR_SKIP();
  TempDir dir;
  Rng rng(5);
  Tensor g = Tensor::randn({3, 5}, rng).to(Device::CUDA);
  write_safetensors(dir / "g.safetensors", {{"g", g}});
  auto back = read_safetensors(dir / "g.safetensors");
  REQUIRE(back[0].second.to_vector<float>() == g.to_vector<float>());
  Tensor dst = Tensor::zeros({3, 5}, DType::F32, Device::CUDA);
  load_state({{"g", dst}}, back, "g");
  REQUIRE(dst.to_vector<float>() == g.to_vector<float>());
}

// ---------------------------------------------------------------- checkpoints

namespace {
NamedTensors small_model(uint64_t seed) {
  Rng rng(seed);
  return {{"conv.weight", Tensor::randn({2, 3, 3, 3}, rng)},
          {"bn.weight", Tensor::uniform({2}, rng, 0.5, 1.5)},
          {"bn.running_mean", Tensor::randn({2}, rng)}};
}
void train_steps(const NamedTensors& model, Optimizer& opt, Rng& rng, int n) {
  for (int k = 0; k < n; ++k) {
    for (auto [name, p] : model)
      if (name != "bn.running_mean") p.set_grad(Tensor::randn(p.shape(), rng));
    opt.step();
    opt.zero_grad();
  }
}
}  // namespace

TEST_CASE("checkpoint round trip: model, AdamW state, step, RNG, JSON metadata", "[weights][checkpoint]") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  NamedTensors model = small_model(1);
  AdamW opt({model[0], model[1]}, AdamWOptions{});
  Rng rng(42);
  train_steps(model, opt, rng, 3);
  nlohmann::json meta = {{"config", {{"model", {{"backbone", "mobilenet_v2"}, {"width", 1.0}}}}},
                         {"note", "x"}};
  save_checkpoint(path, model, &opt, 3, &rng, meta);

  // A fresh run restores everything and then continues exactly like the original.
  NamedTensors model2 = small_model(2);
  AdamW opt2({model2[0], model2[1]}, AdamWOptions{});
  Rng rng2(7);
  Checkpoint c = load_checkpoint(path, model2, &opt2, &rng2);
  REQUIRE(c.step == 3);
  REQUIRE(c.metadata == meta);
  REQUIRE(c.optimizer_name == "adamw");
  require_same(model, model2);
  require_same(opt.state(), opt2.state());
  train_steps(model, opt, rng, 2);
  train_steps(model2, opt2, rng2, 2);
  require_same(model, model2);

  // A checkpoint reads as a plain weights file of the model tensors.
  NamedTensors w = read_weights(path);
  REQUIRE(w.size() == 3);
  REQUIRE(w[0].first == "conv.weight");
  // read_checkpoint splits the optimizer tensors off.
  Checkpoint r = read_checkpoint(path);
  REQUIRE(r.model.size() == 3);
  REQUIRE(r.optimizer.size() == 6);
  REQUIRE(r.optimizer[0].first == "conv.weight.exp_avg");
  REQUIRE(r.rng.size() == 4);
}

TEST_CASE("checkpoint without optimizer or RNG; SGD; errors change nothing", "[weights][checkpoint]") {
  TempDir dir;
  NamedTensors model = small_model(1);
  save_checkpoint(dir / "bare.safetensors", model, nullptr, 0, nullptr);
  NamedTensors m2 = small_model(2);
  load_checkpoint(dir / "bare.safetensors", m2, nullptr, nullptr);
  require_same(model, m2);
  SGD sgd({m2[0]}, SGDOptions{});
  Rng rng(1);
  REQUIRE_THAT(error_of([&] { load_checkpoint(dir / "bare.safetensors", m2, &sgd, nullptr); }),
               Contains("no optimizer state"));
  REQUIRE_THAT(error_of([&] { load_checkpoint(dir / "bare.safetensors", m2, nullptr, &rng); }),
               Contains("no RNG state"));

  // Optimizer kind mismatch.
  train_steps({m2[0]}, sgd, rng, 1);
  save_checkpoint(dir / "sgd.safetensors", m2, &sgd, 1, &rng);
  AdamW adam({m2[0]}, AdamWOptions{});
  REQUIRE_THAT(error_of([&] { load_checkpoint(dir / "sgd.safetensors", m2, &adam, nullptr); }),
               Contains("holds sgd state, but the optimizer is adamw"));

  // A model mismatch is reported before the optimizer or the RNG are touched.
  NamedTensors other = {{"conv.weight", Tensor::zeros({2, 3, 3, 3})}, {"extra", Tensor::zeros({1})}};
  SGD sgd2({other[0]}, SGDOptions{});
  Rng rng2(5);
  const uint64_t w0 = rng2.state_word(0);
  const std::string e = error_of([&] { load_checkpoint(dir / "sgd.safetensors", other, &sgd2, &rng2); });
  REQUIRE_THAT(e, Contains("missing: extra") && Contains("unexpected: bn.weight") &&
                      Contains("unexpected: bn.running_mean"));
  REQUIRE(sgd2.state().empty());
  REQUIRE(rng2.state_word(0) == w0);
  REQUIRE(other[0].second.to_vector<float>() == std::vector<float>(54, 0.0f));

  // A plain weights file is not a checkpoint.
  write_safetensors(dir / "w.safetensors", model);
  REQUIRE_THAT(error_of([&] { read_checkpoint(dir / "w.safetensors"); }), Contains("not a checkpoint"));
}

TEST_CASE("a failed checkpoint write leaves the previous checkpoint intact", "[weights][checkpoint]") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  NamedTensors model = small_model(1);
  AdamW opt({model[0]}, AdamWOptions{});
  Rng rng(3);
  train_steps(model, opt, rng, 1);
  save_checkpoint(path, model, &opt, 1, &rng, {{"epoch", 1}});
  const std::string before = read_bytes(path);
  train_steps(model, opt, rng, 1);
  detail::fail_next_write_after(300);  // "disk full" in the middle of the tensors
  REQUIRE_THAT(error_of([&] {
                 save_checkpoint(path, model, &opt, 2, &rng, {{"epoch", 2}});
               }),
               Contains("ckpt.safetensors") && Contains("No space left") && Contains("unchanged"));
  REQUIRE(read_bytes(path) == before);
  REQUIRE(read_checkpoint(path).step == 1);
  REQUIRE_THAT(error_of([&] { save_checkpoint(dir / "missing/ckpt.safetensors", model, &opt, 2, &rng); }),
               Contains("No such file or directory"));
  save_checkpoint(path, model, &opt, 2, &rng, {{"epoch", 2}});
  REQUIRE(read_checkpoint(path).metadata["epoch"] == 2);
}

// ---------------------------------------------------------------- the convert subcommand

TEST_CASE("deeperlab convert json -> safetensors -> json, and its errors", "[weights][cli]") {
  const char* bin = std::getenv("DEEPERLAB_BIN");
  if (!bin) {
    WARN("skipped: DEEPERLAB_BIN is not set (ctest sets it)");
    return;
  }
  TempDir dir;
  write_json_tensors(dir / "a.json", sample_tensors());
  auto run = [&](const std::string& args) {
    const std::string cmd = std::string(bin) + " convert " + args + " > '" + (dir / "out.txt") + "' 2>&1";
    const int rc = std::system(cmd.c_str());
    return std::make_pair(WEXITSTATUS(rc), read_bytes(dir / "out.txt"));
  };
  auto [rc1, out1] = run(dir / "a.json " + dir / "b.safetensors");
  INFO(out1);
  REQUIRE(rc1 == 0);
  REQUIRE_THAT(out1, Contains("6 tensors, 480 bytes"));
  auto [rc2, out2] = run(dir / "b.safetensors " + dir / "c.json");
  REQUIRE(rc2 == 0);
  REQUIRE(read_bytes(dir / "a.json") == read_bytes(dir / "c.json"));
  require_same(read_safetensors(dir / "b.safetensors"), sample_tensors());

  auto [rc3, out3] = run(dir / "missing.json " + dir / "x.safetensors");
  REQUIRE(rc3 != 0);
  REQUIRE_THAT(out3, Contains("missing.json") && Contains("No such file"));
  auto [rc4, out4] = run(dir / "a.json " + dir / "x.bin");
  REQUIRE(rc4 != 0);
  REQUIRE_THAT(out4, Contains("unknown extension"));
  write_bytes(dir / "bad.json", "{\"a\": [");
  auto [rc5, out5] = run(dir / "bad.json " + dir / "x.safetensors");
  REQUIRE(rc5 != 0);
  REQUIRE_THAT(out5, Contains("malformed JSON"));
}

// ---------------------------------------------------------------- the official library

TEST_CASE("a file written by the official safetensors library (torch save_file) reads correctly",
          "[weights]") {
  // tests/data/official.safetensors was written with safetensors.torch.save_file (PyTorch 2.11):
  // t = {"f32": [[1.5, -2.25], [3e-8, 1e30]] f32, "f16": [1, -0.5, 65504, 6e-8] f16,
  //      "bf16": [1, -123.5, 3.140625] bf16, "f64": [0.1, -7] f64, "i64": [-5, 2**31 - 1],
  //      "i32": [-1, 0, 123456], "u8": [[7], [250]], "bool": [False, True], "scalar": tensor(2.5)}
  // save_file(t, path, metadata={"format": "pt"}). The same run read our own writer's output back
  // with safetensors.numpy.load_file and found every value.
  std::string here = __FILE__;
  here = here.substr(0, here.find_last_of('/'));
  std::map<std::string, std::string> meta;
  NamedTensors ts = read_safetensors(here + "/data/official.safetensors", &meta);
  REQUIRE(meta == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(ts.size() == 9);
  auto get = [&](const std::string& n) {
    Tensor t = find_tensor(ts, n);
    REQUIRE(t.defined());
    return t;
  };
  REQUIRE(get("f32").shape() == Shape{2, 2});
  REQUIRE(get("f32").to_vector<float>() == std::vector<float>{1.5f, -2.25f, 3e-8f, 1e30f});
  REQUIRE(get("f16").to_vector<float>() == std::vector<float>{1.0f, -0.5f, 65504.0f, 0x1p-24f});
  REQUIRE(get("bf16").to_vector<float>() == std::vector<float>{1.0f, -123.5f, 3.140625f});
  REQUIRE(get("f64").to_vector<float>() == std::vector<float>{0.1f, -7.0f});
  REQUIRE(get("i64").to_vector<int32_t>() == std::vector<int32_t>{-5, 2147483647});
  REQUIRE(get("i32").to_vector<int32_t>() == std::vector<int32_t>{-1, 0, 123456});
  REQUIRE(get("u8").shape() == Shape{2, 1});
  REQUIRE(get("u8").to_vector<uint8_t>() == std::vector<uint8_t>{7, 250});
  REQUIRE(get("bool").to_vector<uint8_t>() == std::vector<uint8_t>{0, 1});
  REQUIRE(get("scalar").shape() == Shape{});
  REQUIRE(get("scalar").item() == 2.5);
}
