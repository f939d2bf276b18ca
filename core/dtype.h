// Element types, devices and shapes: the vocabulary every tensor and kernel signature uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dl {

// F32 is the compute type; F64 exists on the CPU for finite-difference gradient checks;
// I32/U8 hold labels and images.
enum class DType : uint8_t { F32, F64, I32, U8 };
enum class Device : uint8_t { CPU, CUDA };
using Shape = std::vector<int64_t>;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::F64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::U8; };

}  // namespace dl
