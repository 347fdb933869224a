"""zray.data's machinery: blocks, the logical plan and its optimizer, the streaming scheduler
(I/O-free) and the executor that runs it on zray tasks and actors."""
