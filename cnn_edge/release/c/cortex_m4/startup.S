/* QEMU mps2-an386 (Cortex-M4F): the vector table at address 0 (initial stack pointer, reset), and a
   reset handler that turns the FPU on (CPACR) before newlib's _start (rdimon: semihosting). */
    .syntax unified
    .cpu cortex-m4
    .thumb

    .section .vectors, "a"
    .word __stack_top
    .word cnn_edge_reset
    .rept 14
    .word cnn_edge_fault
    .endr

    .text
    .thumb_func
    .global cnn_edge_reset
cnn_edge_reset:
    ldr r0, =0xE000ED88
    ldr r1, [r0]
    orr r1, r1, #(0xF << 20)
    str r1, [r0]
    dsb
    isb
    b _start

    .thumb_func
cnn_edge_fault:
    b cnn_edge_fault
