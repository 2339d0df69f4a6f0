/* hip_compat.h: the HIP names the backend uses, on either platform. With hipcc (AMD) they are
 * HIP's own; with nvcc (HYLO_HIP_NVIDIA, `make hip HIP_PLATFORM=nvidia`) this header maps each
 * onto its CUDA twin, so that the kernels and launchers are written once. Only the names the
 * backend calls are listed: add a line here when a new one is needed.
 *
 * HYLO_HIP_BLAS selects hipBLAS (cuBLAS on NVIDIA) for GEMMs; without it (Debian's ROCm ships
 * no hipBLAS) the built-in tiled kernel of core/gemm.hip computes them. The hipBLAS names are
 * those of its v2 API (hipDataType, hipblasComputeType_t: ROCm 6, or HIPBLAS_V2 on 5.x). */
#ifndef HYLO_HIP_COMPAT_H
#define HYLO_HIP_COMPAT_H

#if defined(HYLO_HIP_NVIDIA)

#include <cuda_runtime.h>

typedef cudaError_t hipError_t;
typedef cudaStream_t hipStream_t;
typedef cudaMemcpyKind hipMemcpyKind;
#define hipSuccess cudaSuccess
#define hipGetErrorString cudaGetErrorString
#define hipGetLastError cudaGetLastError
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipMemGetInfo cudaMemGetInfo
#define hipMemcpy cudaMemcpy
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemsetAsync cudaMemsetAsync
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipStreamCreate cudaStreamCreate
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipDeviceSynchronize cudaDeviceSynchronize
#define hipFuncSetAttribute cudaFuncSetAttribute
typedef cudaGraph_t hipGraph_t;
typedef cudaGraphExec_t hipGraphExec_t;
#define hipStreamBeginCapture cudaStreamBeginCapture
#define hipStreamEndCapture cudaStreamEndCapture
#define hipStreamCaptureModeThreadLocal cudaStreamCaptureModeThreadLocal
#define hipGraphInstantiateWithFlags cudaGraphInstantiateWithFlags
#define hipGraphLaunch cudaGraphLaunch
#define hipGraphDestroy cudaGraphDestroy
#define hipGraphExecDestroy cudaGraphExecDestroy
#define hipFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize

#if defined(HYLO_HIP_BLAS)
#include <cublas_v2.h>
typedef cublasHandle_t hipblasHandle_t;
typedef cublasStatus_t hipblasStatus_t;
typedef cudaDataType hipDataType;
typedef cublasOperation_t hipblasOperation_t;
#define HIPBLAS_STATUS_SUCCESS CUBLAS_STATUS_SUCCESS
#define HIPBLAS_OP_N CUBLAS_OP_N
#define HIPBLAS_OP_T CUBLAS_OP_T
#define HIP_R_32F CUDA_R_32F
#define HIP_R_16BF CUDA_R_16BF
#define HIPBLAS_COMPUTE_32F CUBLAS_COMPUTE_32F
#define HIPBLAS_GEMM_DEFAULT CUBLAS_GEMM_DEFAULT
#define hipblasCreate cublasCreate
#define hipblasDestroy cublasDestroy
#define hipblasSetStream cublasSetStream
#define hipblasGemmEx cublasGemmEx
#define hipblasGemmStridedBatchedEx cublasGemmStridedBatchedEx
#endif

#else /* AMD */

#include <hip/hip_runtime.h>

#if defined(HYLO_HIP_BLAS)
#include <hipblas/hipblas.h>
#endif

#endif

#endif
