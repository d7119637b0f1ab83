//! Float text, pinned and checked against slow references: a few hundred floats (canada-like
//! coordinates, any bits, short decimals, every exponent range, subnormals, powers of two and the
//! notation boundaries) must print exactly the text recorded from the formatter before its
//! digit generation was reworked, alone and inside `[a,b]` leaves; random floats must round-trip
//! bit-exactly and be the shortest decimal, checked by brute force over the exact expansion.

use lithair::json::{self, Value};
use proptest::prelude::*;

/// (bits, text) recorded from the formatter as it was before the digit-generation rework.
const PINNED: &[(u64, &str)] = &[
    (0xc0729bc8ba52d4d3, "-297.73650581699366"),
    (0x4035cfe3f17b8f23, "21.81207188860493"),
    (0x40307b93a3b2f1ed, "16.48272154921317"),
    (0x4065e964162cc02a, "175.29346760502204"),
    (0x3ffa746b5c355c0f, "1.6534226991550474"),
    (0x405d7bb2d305c935, "117.93278956952129"),
    (0x405cf5f9b3b54dde, "115.84336559968457"),
    (0x4019b4331f86492d, "6.425976269313009"),
    (0x405ced9e4525b13f, "115.71278504067321"),
    (0xc01a9d601e0cbbc0, "-6.653686971213517"),
    (0x400bced477f1b21c, "3.475991189063519"),
    (0xc0023ccff1c1a3c3, "-2.279693497392573"),
    (0x401e59959134e635, "7.587484616140093"),
    (0xc04d386053025e72, "-58.44043958297415"),
    (0x40496b4379091c3a, "50.837996606300706"),
    (0xc03a5cd111d247b3, "-26.36256514915267"),
    (0xc0188c7e3ab59091, "-6.137200276691275"),
    (0xc036c9b71362b002, "-22.78794976386417"),
    (0xc076ef8c7af32fb6, "-366.97179694170643"),
    (0xc02a83ac42e9f66a, "-13.257173625049479"),
    (0x3ffa6da2778bcef4, "1.6517662687082835"),
    (0x403fb96ec146d298, "31.724346236982996"),
    (0xc047f956c8b03e20, "-47.94796093564605"),
    (0x4066d4732a839cb2, "182.63905835824477"),
    (0xc058f63cf0cffe06, "-99.84746952354189"),
    (0x403803ea215e0b16, "24.015291295490066"),
    (0xc00f2d911dc28114, "-3.8972494435294127"),
    (0x40677ff6ab4872df, "187.9988609709753"),
    (0x4002d7c2427fa6c2, "2.3553509898382297"),
    (0x403d603da07cf3f0, "29.375940351968836"),
    (0xc02d91b3a977f198, "-14.784573837176865"),
    (0x40578381b128af12, "94.05479077313456"),
    (0xc02f1744118826b1, "-15.545441196317684"),
    (0xc05db81d09d57064, "-118.87677236407905"),
    (0x3ff50578d0bf3354, "1.3138359216856843"),
    (0xc02603625428bec6, "-11.00660956380251"),
    (0x4009ad06c96294cb, "3.209485600777588"),
    (0xc05181d6d020bbd0, "-70.02873614498753"),
    (0x3ff959d6be44d907, "1.5844333107357345"),
    (0xc00b4feff93d2dc2, "-3.4140319320483465"),
    (0xc05fe4bf96d650af, "-127.57419367722717"),
    (0xc032b8db35fef5ad, "-18.722094893213285"),
    (0xc053a10cef320ebb, "-78.51641445053512"),
    (0xc003a0a3a06d2176, "-2.4534370930961655"),
    (0x3ffb3c3f6bdb42ef, "1.7022089207786697"),
    (0x403a11193ae0e988, "26.06679122916242"),
    (0xc0308d51d904db7c, "-16.55203014725292"),
    (0xc0339d1e06c0ab5d, "-19.61373941615908"),
    (0xbff69f4a1025985c, "-1.4138889914261403"),
    (0xc01e59a184649485, "-7.587530201567579"),
    (0xc05a538459fdf442, "-105.30495309639176"),
    (0xc03d28c6f10116d3, "-29.159285605207355"),
    (0xc05bd5de5ba7a582, "-111.34169665691118"),
    (0xc03e837d7820703a, "-30.513633258742836"),
    (0x405579cddf8fe94a, "85.90319050840222"),
    (0x40530e415dea0bf4, "76.22273967605707"),
    (0x4002f0df9883a0d3, "2.3676139750642533"),
    (0xc04dcc4e336e2b6c, "-59.59613650206924"),
    (0xc00b6b142ab93d1b, "-3.427284559038197"),
    (0x401fb9d93ab055e2, "7.931492726338066"),
    (0x4008883626015853, "3.0665095299873797"),
    (0xc05f24b111d0eaee, "-124.57330747034186"),
    (0xc0025920a16ed7ee, "-2.293519269175696"),
    (0xbffa4a06fe990718, "-1.6430730767464805"),
    (0xc034e46fc46a901e, "-20.892330432907436"),
    (0xc0316909342e5299, "-17.410296689328423"),
    (0x404d532f32b00072, "58.64987786859355"),
    (0xc03647279a8eccee, "-22.277948055137067"),
    (0x4022175a85619a24, "9.045612495579071"),
    (0xc03d26b690e70d8c, "-29.151223236474422"),
    (0x40244fb46f15899d, "10.155673476580711"),
    (0xc0310867a733838d, "-17.032831621243123"),
    (0xbff4f5ab623234fd, "-1.3099778972421625"),
    (0xc00f4bca82f78eef, "-3.9120073539542015"),
    (0x402532cb968277d9, "10.599209502626694"),
    (0x402006fe6be2d081, "8.013659831464112"),
    (0xc03a110f51f4cba5, "-26.066640016808055"),
    (0x4031f83157e486b1, "17.969502919476046"),
    (0x401c6d00aad2af00, "7.106447857960802"),
    (0xc02533e54fdfba09, "-10.60135888677634"),
    (0x4053063f078e747c, "76.09759701644538"),
    (0x4051884556b4e50a, "70.12923209825036"),
    (0x40125f413dc57ae5, "4.593022313287951"),
    (0x406c991fcf8dfe41, "228.78513314946215"),
    (0xc03cda2e038467f1, "-28.85226461393899"),
    (0xc002643a6b39468d, "-2.298939550099766"),
    (0xc013cc230e2896c5, "-4.949352475383141"),
    (0x4067f8abaa489ebe, "191.77095522101985"),
    (0x402b916ac63f7bf8, "13.784017749070685"),
    (0xc0245fe545f662b0, "-10.187296091390948"),
    (0x40644410a97b2546, "162.1270339398563"),
    (0xc023d41efcdaf4ee, "-9.9142989175111"),
    (0x4030076ad3ce621d, "16.02897380627302"),
    (0xc00bcb0bccf49b3a, "-3.4741436016223846"),
    (0x402e3f96001f8f64, "15.124191287853769"),
    (0xc0145b1c78a2e893, "-5.088975796645303"),
    (0x401cf2fa36c305f7, "7.237282615330961"),
    (0x405954ebfce6bb9e, "101.32690355808742"),
    (0x4010a0ee237e605a, "4.157158426845934"),
    (0x40571b05670223b7, "92.42220473488747"),
    (0x3ff98bfe6b8f1a92, "1.5966781808398633"),
    (0x402bf0d01ff9fca7, "13.970337867036802"),
    (0xbff836763da447c1, "-1.513296356952637"),
    (0x3ff2ecae6c18487a, "1.1827835295157727"),
    (0xc03539b996455ae3, "-21.225488082821254"),
    (0xbff09e2b4ba2aeae, "-1.0386155085097175"),
    (0x40298e0c312823da, "12.777436767721088"),
    (0x3ff20898fbc62585, "1.1270990214273706"),
    (0xc02207dab99a0c1d, "-9.015340614370922"),
    (0xc0727a1eb8f2e1a3, "-295.6325005996279"),
    (0x404bf7a52939b230, "55.93472781483831"),
    (0xc04061930ebf222b, "-32.762300341917886"),
    (0xc00b1b1282a8c09f, "-3.3882188995122102"),
    (0x40654c2d83dd8314, "170.38055604232852"),
    (0x402692d5da45ba0e, "11.286787816058702"),
    (0xbffd14da45336270, "-1.8175909712937504"),
    (0xc0581137bf1659c3, "-96.269027492358"),
    (0xc0594b8eef24d0d1, "-101.18059900851519"),
    (0xc028949d879c5b0e, "-12.290264356457126"),
    (0x3ff131666e0b3104, "1.0745605753500636"),
    (0x83f86da5f8f1849c, "-1.5666705146573485e-289"),
    (0x430be26281afa0ed, "981092135203869.6"),
    (0x0ca83ba94e8382aa, "1.0830828882162971e-247"),
    (0x6a0d4a270ad12e94, "7.1743308957331476e202"),
    (0x6459489d0f8b8dcd, "2.5013657814038387e175"),
    (0x0deacbccc724d274, "1.2558129973789187e-241"),
    (0x39e287bd67a161ba, "7.308888519695267e-30"),
    (0xa2d270e22d379aaf, "-6.049024674946247e-141"),
    (0xe7d6c80cd1016139, "-1.62404675883615e192"),
    (0xe71662e562591b6f, "-3.896187667759241e188"),
    (0xb59bbde2be1f63d1, "-1.8536786631113346e-50"),
    (0x15e0f9b62c96c182, "2.707159681036533e-203"),
    (0x7f801f0c653aecf3, "1.4150937292574036e306"),
    (0x119cfa8c7ed8d893, "7.828926716830903e-224"),
    (0x012f46f60abfb1ab, "5.701145546579923e-303"),
    (0x6add84af7939d597, "5.923091232496273e206"),
    (0xf5ecfc5bae9314a7, "-1.1141692711169365e260"),
    (0x2c3ae2a35c3ac8ae, "1.2586829754956758e-95"),
    (0x7c0a7ce6362b227c, "3.226659795302534e289"),
    (0x3d303424ae92b3be, "5.75670523580072e-14"),
    (0x30741e9374dfadf3, "2.780077656873513e-75"),
    (0x59d600298616ebda, "5.817460064095699e124"),
    (0xe3642ec410aa8893, "-6.093493839483721e170"),
    (0x770dc91f0fd0c321, "3.0013247583553366e265"),
    (0xf1199d1d5e8cf8d6, "-6.515225115051771e236"),
    (0xacc47dd472bfbb9e, "-4.911855538175993e-93"),
    (0x31248693da8775d1, "5.80856543175642e-72"),
    (0xd4238fd1bed080c2, "-2.0891869416322093e97"),
    (0x522f4f60f9698d76, "7.785613532648447e87"),
    (0x21104ea2272c5e44, "1.992693657689745e-149"),
    (0xd6b008a657895453, "-3.765603429583373e109"),
    (0x096a636d609efa33, "2.618826091132406e-263"),
    (0xf004bdf98f3d08fc, "-4.0253085994644974e231"),
    (0xd40cbd5f85c8bf10, "-7.673463689003796e96"),
    (0x4551d3a470cb545c, "8.620476662017994e25"),
    (0xcd055727697dbfa0, "-1.0973687411739212e63"),
    (0xe7bd48b68a129a01, "-5.21901063416613e191"),
    (0x289f9642fe4b818f, "5.1306154643674445e-113"),
    (0x4e72ad76daaf400f, "8.056751364229921e69"),
    (0xc2d3343841c93792, "-84460012250334.28"),
    (0x47a1d47341bffa25, "1.184999027435099e37"),
    (0xa7c5dfc105caca4f, "-4.337112408950782e-117"),
    (0x1254d08bfae9e6e5, "2.3033079235404182e-220"),
    (0x51fc5462388cddd1, "8.805612600414317e86"),
    (0x089940dfc200189f, "3.0593133531324786e-267"),
    (0x0b979bbff7d448cc, "8.05026483874866e-253"),
    (0x7a62cf605c3d73d2, "3.4144144719100187e281"),
    (0xce5b6c49b5535111, "-2.957290437400863e69"),
    (0x066374d89f10df21, "6.859890370212241e-278"),
    (0x1a97f5a3216bf07b, "1.4435131057456946e-180"),
    (0xaf37427323139bb7, "-3.0650873022187053e-81"),
    (0x6dc44560abf0c18e, "5.724560486743461e220"),
    (0xe0ae1d3ed6b9ab72, "-5.168204123269556e157"),
    (0x223957e0faf2f334, "8.118295329683771e-144"),
    (0xa96ea63c5cafb64c, "-4.0782418073726533e-109"),
    (0xcaf54b1d6e9fc103, "-1.2746901524514575e53"),
    (0xea8c7f739e9cb8b9, "-1.7869783138953452e205"),
    (0x05882e831491896a, "5.203800976729898e-282"),
    (0x3e7a79a25721a45f, "9.862755748355808e-8"),
    (0x510adabb63d8181f, "2.5473266570537073e82"),
    (0xe139596010188e7c, "-2.2274124000866988e160"),
    (0x552db854c89f5795, "2.080165987690774e102"),
    (0x06a3760d3b048b94, "1.097848105009066e-276"),
    (0xd131fd6a0018662c, "-1.3651725216465597e83"),
    (0xafd6a3bced31090e, "-3.054990858127295e-78"),
    (0x2c449eb5df845c52, "1.9307198327244164e-95"),
    (0xf54aff8ee70c581d, "-1.0134499921383066e257"),
    (0x6ea34e5ad7f70fc1, "8.932658628801282e224"),
    (0x13c3c7d30372cd4c, "1.8361651640893023e-213"),
    (0xeec68b98c0c046da, "-4.1725618226781087e225"),
    (0x48d25514697bcd74, "6.387889120888256e42"),
    (0x35134ba28e964ec8, "5.0363472279421155e-53"),
    (0x1d24213ac2f2bb97, "2.666932074785325e-168"),
    (0x8b0ac2b40191bc8e, "-1.7822510282556687e-255"),
    (0x183ce5f16255abd8, "6.333937666552472e-192"),
    (0xadc4b1b854c6a1ff, "-3.2508753558630207e-88"),
    (0x50637ffadd6a1a32, "1.8063493337533863e79"),
    (0x72aa8ac751baef87, "2.2653840856019246e244"),
    (0xabb246b0675da5db, "-3.3423016393825825e-98"),
    (0x127e1e96bad4794f, "1.333186020620416e-219"),
    (0x40c1f1eb15b573eb, "9187.8366"),
    (0x3f80456cfda1845e, "0.0079449191"),
    (0x4160a9375999999a, "8735162.8"),
    (0x3f1148a47ec2b805, "6.5932312e-5"),
    (0x3f75b3e897870466, "0.0052985273"),
    (0x4057c0de0d66f0d0, "95.013553"),
    (0x3f248ffa338d4b2d, "0.00015687875"),
    (0x411f1d98eb851eb8, "509798.23"),
    (0x3f18c045c770623c, "9.4417819e-5"),
    (0x3f07d6ac63bc8e1e, "4.546846e-5"),
    (0x3f49a7ac696e7058, "0.00078292769"),
    (0x404bce3886594af5, "55.6111"),
    (0x41452bbbc0000000, "2774903.5"),
    (0x3f4b4966deabd165, "0.00083272479"),
    (0x3fdb87e75fcb16bf, "0.43016991"),
    (0x3f7cc8e6e4252e0d, "0.0070275325"),
    (0x3fb7d397b0faf8f4, "0.093072396"),
    (0x3fc26f6cf54bc6fe, "0.14402544"),
    (0x4124ab86bd70a3d7, "677315.37"),
    (0x3feaef0e8b5e178d, "0.84168174"),
    (0x3fd91b377e71750d, "0.39228618"),
    (0x4095fd6a7ef9db23, "1407.354"),
    (0x40f4ed02189374bc, "85712.131"),
    (0x4040441c8216c615, "32.53212"),
    (0x40addc1b7e90ff97, "3822.0537"),
    (0x3f697bab531cb603, "0.0031107279"),
    (0x412900f37ae147ae, "819321.74"),
    (0x3f94671b0e9b9b9f, "0.019924567"),
    (0x418c142220000000, "58885188.0"),
    (0x3fe873a7a7a4494b, "0.76411803"),
    (0x3fb68710c9039d21, "0.087998437"),
    (0x3fe38922a8f75a95, "0.61049016"),
    (0x3f18ec5edc2e11aa, "9.507493e-5"),
    (0x3f81b6b2a8351d2b, "0.0086492498"),
    (0x4195b8ba50000000, "91106964.0"),
    (0x3f3d8a45b0e7a896, "0.00045074655"),
    (0x41235770c7ae147b, "633784.39"),
    (0x3f7213503edcb4a1, "0.00441295"),
    (0x41446b974ccccccd, "2676526.6"),
    (0x40f4d0f4c083126f, "85263.297"),
    (0x5028315a8bcf5b57, "1.4006667262225346e78"),
    (0x5a235bfa67f29dec, "1.6380894681684474e126"),
    (0x1f298b35471e3ade, "1.4535082055489433e-158"),
    (0x0ce850b4c9dcda76, "1.7388112961026917e-246"),
    (0x45cbce7e06e923b5, "1.7211458259347413e28"),
    (0x0b753f9069ddaf7e, "1.8113726014292502e-253"),
    (0x260990889d0d1931, "1.8882981006465144e-125"),
    (0x7f4bfa0d2995d212, "1.5348399474259913e305"),
    (0x07e822d59c6c05e8, "1.4277116340328365e-270"),
    (0x36a36fc25fab721f, "1.7022763249827785e-45"),
    (0x216ecc58c028fe02, "1.204308869083946e-147"),
    (0x3ba05fdcb26e51a9, "1.733713528831828e-21"),
    (0x177440b0fd24c94b, "1.083741664926056e-195"),
    (0x074dab94c94e4214, "1.7139375572091827e-273"),
    (0x17b09e767d820a62, "1.422877724508191e-194"),
    (0x4d39c241a8a64497, "1.05965616107299e64"),
    (0x1f5834930fc1a153, "1.1018792076770205e-157"),
    (0x39c186e7ddfc0b92, "1.7282932209818107e-30"),
    (0x22e871b0ab3d6582, "1.6036371955144244e-140"),
    (0x36d4b8f795749156, "1.451922321194481e-44"),
    (0x69b185325537c725, "1.3410922138408833e201"),
    (0x6c69cdb2d1b4f96c, "1.7373435949871115e214"),
    (0x5d7a2519ef90836b, "1.9926242176973376e142"),
    (0x43ec02295e387c64, "1.6145768541333955e19"),
    (0x2ec342c65aa95ac7, "1.9829255743129823e-83"),
    (0x0000000000056b10, "1.75437e-318"),
    (0x66c276ec4c516104, "1.0042593661636822e187"),
    (0x7d63cf52ce9140cd, "1.0121551793075115e296"),
    (0x5f1e9d09c8ae73fd, "1.5657768126131225e150"),
    (0x5ee14f579281410d, "1.1066828569450757e149"),
    (0x691891135750357a, "1.836386159448611e198"),
    (0x231fedae657a156c, "1.6757134364507786e-139"),
    (0x09576dc2673edf92, "1.1625533204006047e-263"),
    (0x3778c649a21b2b53, "1.7774875831871104e-41"),
    (0x6b635ae50bde1e50, "1.988481106929827e209"),
    (0x3f85d1b6060a7bfe, "0.010653898295741367"),
    (0x42d8356117ea2f91, "106470165162174.27"),
    (0x260784944fc911d6, "1.7371212604790521e-125"),
    (0x224ed542b5159f04, "1.9753704455428922e-143"),
    (0x5e10b972a956e561, "1.305234742567014e145"),
    (0x00043022dfc19194, "5.82417551487922e-309"),
    (0x000938402d190544, "1.2821611586174165e-308"),
    (0x000af8ba583cf151, "1.525787852970244e-308"),
    (0x00031c29eb27c760, "4.32500765340994e-309"),
    (0x0006c5f8ced07c58, "9.419471579203856e-309"),
    (0x00006fc0b5ab148d, "6.0707561444694e-310"),
    (0x0001b2b4638e3376, "2.36145004821678e-309"),
    (0x00066651dd2a76bd, "8.899859659470725e-309"),
    (0x000b49b21c0dcc42, "1.569772082856104e-308"),
    (0x000c98f27d6106ac, "1.751891056352228e-308"),
    (0x22e0000000000000, "1.0496681418073576e-140"),
    (0x28a0000000000000, "5.19770488282245e-113"),
    (0x6e70000000000000, "9.253728939895087e223"),
    (0x0930000000000000, "1.9848322066592191e-264"),
    (0x44b0000000000000, "7.555786372591432e22"),
    (0x7570000000000000, "4.804810770435008e257"),
    (0x10b0000000000000, "2.638294536026986e-228"),
    (0x3210000000000000, "1.4836824602749686e-67"),
    (0x5140000000000000, "2.4283361152821613e83"),
    (0x79c0000000000000, "2.83625966735417e278"),
    (0x4341c37937e07fff, "9999999999999998.0"),
    (0x4341c37937e08001, "1.0000000000000002e16"),
    (0x4341c37937e08000, "1e16"),
    (0x3f1a36e2eb1c432c, "9.999999999999999e-5"),
    (0x3f1a36e2eb1c432e, "0.00010000000000000002"),
    (0x3f1a36e2eb1c432d, "0.0001"),
    (0x433fffffffffffff, "9007199254740991.0"),
    (0x4340000000000001, "9007199254740994.0"),
    (0x4340000000000000, "9007199254740992.0"),
    (0x430c6bf52633ffff, "999999999999999.9"),
    (0x430c6bf526340001, "1000000000000000.1"),
    (0x430c6bf526340000, "1000000000000000.0"),
    (0x7fefffffffffffff, "1.7976931348623157e308"),
    (0x0010000000000000, "2.2250738585072014e-308"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000000, "-0.0"),
    (0x0000000000000000, "0.0"),
    (0x3fb999999999999a, "0.1"),
    (0x3fd3333333333333, "0.3"),
    (0x4059000000000000, "100.0"),
];

#[test]
fn pinned_floats_print_unchanged() {
    assert!(PINNED.len() >= 300, "a few hundred pinned floats");
    for &(bits, text) in PINNED {
        let v = f64::from_bits(bits);
        assert_eq!(json::to_string(&v).unwrap(), text, "bits {bits:#018x}");
        assert_eq!(
            json::to_string(&Value::from(v)).unwrap(),
            text,
            "bits {bits:#018x}"
        );
    }
}

/// The small-array window (`[a]`, `[a,b]` leaves such as coordinates) writes the same text.
#[test]
fn pinned_floats_print_unchanged_in_point_arrays() {
    for pair in PINNED.windows(2) {
        let [(a_bits, a_text), (b_bits, b_text)] = [pair[0], pair[1]];
        let a = Value::from(f64::from_bits(a_bits));
        let b = Value::from(f64::from_bits(b_bits));
        let one = Value::Array(vec![a.clone()]);
        assert_eq!(json::to_string(&one).unwrap(), format!("[{a_text}]"));
        let points = Value::Array(vec![one, Value::Array(vec![a, b])]);
        assert_eq!(
            json::to_string(&points).unwrap(),
            format!("[[{a_text}],[{a_text},{b_text}]]")
        );
    }
}

/// The significant digits of a float's text (no sign, point, exponent, leading or trailing
/// zeros).
fn significant_digits(text: &str) -> String {
    let mantissa = text
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_string()
}

/// The exact decimal expansion of a finite, non-zero `v`: its digits (enough to hold every one,
/// padded with zeros) and the decimal exponent of the first.
fn exact_expansion(v: f64) -> (Vec<u8>, i32) {
    // An f64 has at most 767 significant decimal digits; std prints exact digits at any
    // precision.
    let text = format!("{:.800e}", v.abs());
    let (mantissa, exponent) = text.split_once('e').expect("scientific notation");
    let digits = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    (digits, exponent.parse().expect("an exponent"))
}

/// True when some decimal of at most `count` significant digits parses back to `v`: any such
/// decimal lies in v's rounding interval, and then so does one of the two `count`-digit
/// decimals that bracket v (the interval is convex and holds v), so those two are enough.
fn some_decimal_of_digits_round_trips(v: f64, count: usize) -> bool {
    assert!((1..=17).contains(&count));
    let (digits, exponent) = exact_expansion(v);
    let below = digits[..count]
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d));
    let scale = exponent - (count as i32 - 1);
    [below, below + 1].iter().any(|&candidate| {
        let text = format!("{candidate}e{scale}");
        text.parse::<f64>().map(f64::abs) == Ok(v.abs())
    })
}

/// The fewest digits of the correctly rounded `{:.*e}` forms that parse back to `v`, trying
/// precisions 1..=17 (the slow reference the brief asks for; 17 always suffices).
fn rounded_digits_needed(v: f64) -> usize {
    (1..=17)
        .find(|&count| format!("{:.*e}", count - 1, v).parse::<f64>() == Ok(v))
        .expect("17 significant digits round-trip every f64")
}

/// Round trip, and shortest by brute force: our digit count is at most the rounded reference's,
/// and no decimal with one digit fewer round-trips.
fn check_shortest(v: f64) {
    let text = json::to_string(&v).unwrap();
    let back = json::parse(&text).unwrap().as_f64().unwrap();
    assert_eq!(back.to_bits(), v.to_bits(), "{text} does not round-trip");
    if v == 0.0 {
        return;
    }
    let count = significant_digits(&text).len();
    assert!(count >= 1, "{text}");
    assert!(
        count <= rounded_digits_needed(v),
        "{text} longer than needed"
    );
    if count > 1 {
        assert!(
            !some_decimal_of_digits_round_trips(v, count - 1),
            "{text}: {} digits would do",
            count - 1
        );
    }
}

#[test]
fn shortest_reference_on_known_values() {
    for v in [
        0.1,
        0.3,
        1.0,
        100.0,
        1e16,
        1e-4,
        5e-324,
        1.7976931348623157e308,
        2.2250738585072014e-308,
        -65.61361699999998,
        43.418052999999986,
        9007199254740993.0,
        1e23,
        4.35,
    ] {
        check_shortest(v);
        check_shortest(-v);
    }
    // The reference itself: 0.3 needs one digit, 0.1 + 0.2 needs seventeen.
    assert_eq!(rounded_digits_needed(0.3), 1);
    assert_eq!(rounded_digits_needed(0.1 + 0.2), 17);
    assert!(some_decimal_of_digits_round_trips(0.3, 1));
    assert!(!some_decimal_of_digits_round_trips(0.1 + 0.2, 16));
}

/// Finite f64s biased towards canada.json's coordinates (magnitudes 1 to 512, any mantissa),
/// besides any bits at all.
fn float_bits() -> impl Strategy<Value = u64> {
    let coordinate =
        (any::<bool>(), 1023u64..1032, 0u64..1 << 52).prop_map(|(negative, exponent, mantissa)| {
            u64::from(negative) << 63 | exponent << 52 | mantissa
        });
    prop_oneof![any::<u64>(), coordinate]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_floats_round_trip_and_are_shortest(bits in float_bits()) {
        let v = f64::from_bits(bits);
        if v.is_finite() {
            check_shortest(v);
        }
    }
}
